// Package audit reads Kubernetes API server audit logs (audit.k8s.io/v1
// JSON lines) into the few fields coverage needs, one event per request.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Stages of audit.k8s.io/v1.
const (
	StageRequestReceived  = "RequestReceived"
	StageResponseStarted  = "ResponseStarted"
	StageResponseComplete = "ResponseComplete"
	StagePanic            = "Panic"
)

// ObjectRef is the object a request is about, as the API server saw it.
type ObjectRef struct {
	Resource    string `json:"resource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"`
	APIVersion  string `json:"apiVersion,omitempty"`
	Subresource string `json:"subresource,omitempty"`
}

// Event is the part of an audit event that coverage uses. Only these fields
// are decoded; the rest of each line is skipped.
type Event struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	UserAgent  string `json:"userAgent"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef      *ObjectRef `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Kind string `json:"kind"`
}

// Code is the response status code; a Panic stage without one is a 500.
func (e *Event) Code() int {
	if e.ResponseStatus != nil && e.ResponseStatus.Code != 0 {
		return e.ResponseStatus.Code
	}
	if e.Stage == StagePanic {
		return http.StatusInternalServerError
	}
	return 0
}

// Method is the HTTP method of the request, derived from its verb: audit
// events do not record the method. Non-resource verbs are the lower-case
// method already.
func (e *Event) Method() string {
	switch e.Verb {
	case "get", "list", "watch", "proxy":
		return http.MethodGet
	case "create", "post":
		return http.MethodPost
	case "update", "put":
		return http.MethodPut
	case "patch":
		return http.MethodPatch
	case "delete", "deletecollection":
		return http.MethodDelete
	case "head":
		return http.MethodHead
	case "options":
		return http.MethodOptions
	}
	return http.MethodGet
}

// errMalformed marks a line that is not an audit event.
var errMalformed = errors.New("malformed audit line")

// ParseLine decodes one JSON line into ev.
func ParseLine(line []byte, ev *Event) error {
	*ev = Event{}
	if err := json.Unmarshal(line, ev); err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}
	if ev.Kind != "" && ev.Kind != "Event" {
		return fmt.Errorf("%w: kind %q is not Event", errMalformed, ev.Kind)
	}
	if ev.AuditID == "" || ev.Stage == "" || ev.Verb == "" || ev.RequestURI == "" {
		return fmt.Errorf("%w: auditID, stage, verb and requestURI are required", errMalformed)
	}
	return nil
}

// Stats counts what a Reader read and why it skipped lines.
type Stats struct {
	Lines     int64 `json:"lines"`
	Events    int64 `json:"events"`
	Malformed int64 `json:"malformed"`
	// Duplicates are the later stages of requests already counted (the
	// ResponseComplete of a watch counted at ResponseStarted).
	Duplicates int64 `json:"duplicates"`
	// Incomplete are RequestReceived events, which every request also logs
	// at a later stage.
	Incomplete int64 `json:"incomplete"`
}

// Reader yields one event per request from audit log lines: the
// ResponseStarted stage of long-running requests (so a watch still open when
// the log ends counts), otherwise ResponseComplete or Panic.
type Reader struct {
	br    *bufio.Reader
	long  []byte // holds a line longer than br's buffer
	err   error
	ev    Event
	stats Stats
	// started holds the audit IDs counted at ResponseStarted, until their
	// ResponseComplete arrives.
	started map[string]struct{}
	// OnMalformed, when set, is told about each malformed line.
	OnMalformed func(line int64, err error)
}

// maxLine is the longest audit line accepted; longer lines (RequestResponse
// level bodies) are skipped as malformed rather than ending the read.
const maxLine = 16 << 20

// NewReader reads audit lines from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 256<<10), started: make(map[string]struct{})}
}

// readLine returns the next line without its newline. A line longer than
// maxLine is returned empty with errLineTooLong, and reading goes on.
func (r *Reader) readLine() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	line, err := r.br.ReadSlice('\n')
	if err == nil || (err == io.EOF && len(line) > 0) {
		if err == io.EOF {
			r.err = io.EOF
		}
		return line, nil
	}
	if err != bufio.ErrBufferFull {
		r.err = err
		return nil, err
	}
	// A line longer than the buffer: gather it, up to maxLine.
	r.long = append(r.long[:0], line...)
	tooLong := false
	for {
		line, err = r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.long)+len(line) > maxLine {
				tooLong = true
				r.long = r.long[:0]
			} else {
				r.long = append(r.long, line...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			r.err = err
		}
		if tooLong {
			return nil, errLineTooLong
		}
		return r.long, nil
	}
}

var errLineTooLong = fmt.Errorf("%w: line longer than %d bytes", errMalformed, maxLine)

// Next returns the next counted event, or io.EOF. The event is reused by the
// following call.
func (r *Reader) Next() (*Event, error) {
	for {
		line, err := r.readLine()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil && !errors.Is(err, errMalformed) {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		r.stats.Lines++
		if err != nil {
			r.malformed(err)
			continue
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := ParseLine(line, &r.ev); err != nil {
			r.malformed(err)
			continue
		}
		switch r.ev.Stage {
		case StageRequestReceived:
			r.stats.Incomplete++
			continue
		case StageResponseStarted:
			r.started[r.ev.AuditID] = struct{}{}
		case StageResponseComplete, StagePanic:
			if _, ok := r.started[r.ev.AuditID]; ok {
				delete(r.started, r.ev.AuditID)
				r.stats.Duplicates++
				continue
			}
		default:
			r.malformed(fmt.Errorf("%w: unknown stage %q", errMalformed, r.ev.Stage))
			continue
		}
		r.stats.Events++
		return &r.ev, nil
	}
}

func (r *Reader) malformed(err error) {
	r.stats.Malformed++
	if r.OnMalformed != nil {
		r.OnMalformed(r.stats.Lines, err)
	}
}

// Stats returns what was read so far.
func (r *Reader) Stats() Stats { return r.stats }
