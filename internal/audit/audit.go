// Package audit reads Kubernetes API server audit logs (audit.k8s.io/v1
// JSON lines) into the few fields coverage needs, and counts each request
// once however its stages arrive.
package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unsafe"
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

// ResponseStatus is the part of an event's responseStatus coverage uses.
type ResponseStatus struct {
	Code int `json:"code"`
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
	ObjectRef      *ObjectRef      `json:"objectRef"`
	ResponseStatus *ResponseStatus `json:"responseStatus"`
	Kind           string          `json:"kind"`
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
// method already. An empty verb is what the API server logs for a resource
// request whose method it does not know: Method is then "" and the request
// matches no operation.
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
	case "":
		return ""
	}
	// Any other verb is a non-resource request's lower-case method.
	return strings.ToUpper(e.Verb)
}

// errMalformed marks a line that is not an audit event.
var errMalformed = errors.New("malformed audit line")

func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
}

// check says whether a decoded line is an audit event coverage can use. An
// empty verb is allowed: the API server logs it for a resource request
// with a method it does not know.
func (e *Event) check() error {
	if e.Kind != "" && e.Kind != "Event" {
		return malformedf("kind %q is not Event", e.Kind)
	}
	if e.AuditID == "" || e.Stage == "" || e.RequestURI == "" {
		return malformedf("auditID, stage and requestURI are required")
	}
	if stageOf(e.Stage) == stageNone {
		return malformedf("unknown stage %q", e.Stage)
	}
	return nil
}

// ParseLine decodes one JSON line into ev. ev shares no memory with line.
func ParseLine(line []byte, ev *Event) error {
	var d decoder
	err := d.decode(line, ev)
	*ev = *ev.clone()
	return err
}

// clone copies e into memory of its own: one allocation for the strings,
// one for the event with its objectRef and responseStatus.
func (e *Event) clone() *Event {
	var ref ObjectRef
	if e.ObjectRef != nil {
		ref = *e.ObjectRef
	}
	fields := [...]*string{&e.AuditID, &e.Stage, &e.Verb, &e.RequestURI, &e.UserAgent, &e.User.Username, &e.Kind,
		&ref.Resource, &ref.Namespace, &ref.Name, &ref.APIGroup, &ref.APIVersion, &ref.Subresource}
	n := 0
	for _, f := range fields {
		n += len(*f)
	}
	buf := make([]byte, 0, n)
	for _, f := range fields {
		buf = append(buf, *f...)
	}
	whole := ""
	if n > 0 {
		whole = unsafe.String(&buf[0], n)
	}
	c := &struct {
		ev     Event
		ref    ObjectRef
		status ResponseStatus
	}{}
	copied := [...]*string{&c.ev.AuditID, &c.ev.Stage, &c.ev.Verb, &c.ev.RequestURI, &c.ev.UserAgent, &c.ev.User.Username, &c.ev.Kind,
		&c.ref.Resource, &c.ref.Namespace, &c.ref.Name, &c.ref.APIGroup, &c.ref.APIVersion, &c.ref.Subresource}
	at := 0
	for i, f := range fields {
		*copied[i] = whole[at : at+len(*f)]
		at += len(*f)
	}
	if e.ObjectRef != nil {
		c.ev.ObjectRef = &c.ref
	}
	if e.ResponseStatus != nil {
		c.status = *e.ResponseStatus
		c.ev.ResponseStatus = &c.status
	}
	return &c.ev
}

// Stats counts what was read and how it was counted.
type Stats struct {
	// Lines are the lines read, Malformed those that are not audit events
	// (skipped), Events the audit events among them, of any stage.
	Lines     int64 `json:"lines"`
	Malformed int64 `json:"malformed"`
	Events    int64 `json:"events"`
	DedupStats
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Lines += o.Lines
	s.Malformed += o.Malformed
	s.Events += o.Events
	s.Requests += o.Requests
	s.Open += o.Open
	s.Duplicates += o.Duplicates
	s.Incomplete += o.Incomplete
}

// Reader yields one event per request from audit log lines, the event it
// counts at (see Deduper): ResponseComplete or Panic, or ResponseStarted
// for a request still open when the log ends. It reads one line at a time;
// Analyze and Classify read in parallel.
type Reader struct {
	lines lineReader
	dec   decoder
	ev    Event
	dedup *Deduper[*Event]
	ready []*Event // counted, not yet returned
	ended bool
	stats Stats
	// OnMalformed, when set, is told about each malformed line.
	OnMalformed func(line int64, err error)
}

// maxLine is the longest audit line accepted; longer lines (RequestResponse
// level bodies) are skipped as malformed rather than ending the read.
const maxLine = 16 << 20

var errLineTooLong = fmt.Errorf("%w: line longer than %d bytes", errMalformed, maxLine)

// NewReader reads audit lines from r, remembering DefaultWindow audit IDs.
func NewReader(r io.Reader) *Reader {
	rd := &Reader{lines: lineReader{br: bufio.NewReaderSize(r, 256<<10)}}
	rd.dedup = NewDeduper(0, 0, func(ev *Event) { rd.ready = append(rd.ready, ev) })
	return rd
}

// Next returns the next counted event, or io.EOF.
func (r *Reader) Next() (*Event, error) {
	for len(r.ready) == 0 {
		if r.ended {
			return nil, io.EOF
		}
		line, err := r.lines.next()
		if err == io.EOF {
			r.dedup.Flush()
			r.ended = true
			continue
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
		if err := r.dec.decode(line, &r.ev); err != nil {
			r.malformed(err)
			continue
		}
		r.stats.Events++
		st := stageOf(r.ev.Stage)
		var ev *Event
		if st != stageReceived {
			ev = r.ev.clone()
		}
		r.dedup.add(keyOf(r.ev.AuditID), st, ev)
	}
	ev := r.ready[0]
	r.ready[0] = nil
	r.ready = r.ready[1:]
	return ev, nil
}

func (r *Reader) malformed(err error) {
	r.stats.Malformed++
	if r.OnMalformed != nil {
		r.OnMalformed(r.stats.Lines, err)
	}
}

// Stats returns what was read so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.DedupStats = r.dedup.Stats()
	return s
}

// lineReader splits a stream into lines, skipping over lines longer than
// maxLine.
type lineReader struct {
	br   *bufio.Reader
	long []byte // holds a line longer than br's buffer
	err  error
}

// next returns the next line. A line longer than maxLine is returned empty
// with errLineTooLong, and reading goes on.
func (r *lineReader) next() ([]byte, error) {
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
