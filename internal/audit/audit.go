// Package audit reads Kubernetes API server audit logs (audit.k8s.io/v1
// JSON lines) into the few fields coverage needs, and counts each request
// once however its stages arrive.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
	// RequestObject is the request body as the API server logged it, at
	// Request and RequestResponse level: a patch's body as sent (an apply
	// patch written as YAML turned into JSON), the object a create or
	// update decoded to (re-encoded: defaults filled in, fields the
	// decoder dropped gone), nil when absent. Like the strings, it shares
	// the line's memory.
	RequestObject json.RawMessage `json:"requestObject"`
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
// one for the event with its objectRef and responseStatus, one for the
// requestObject when there is one.
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
	if e.RequestObject != nil {
		c.ev.RequestObject = bytes.Clone(e.RequestObject)
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

// maxLine is the longest audit line accepted; longer lines (RequestResponse
// level bodies) are skipped as malformed rather than ending the read.
const maxLine = 16 << 20

var errLineTooLong = fmt.Errorf("%w: line longer than %d bytes", errMalformed, maxLine)
