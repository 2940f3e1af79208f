// Package record is the event model of what a recording proxy saw, its
// redaction, and the shipping of aggregated deltas to the collector.
package record

import "time"

// Stage says when an Event was emitted, like the API server's audit stages.
type Stage string

const (
	// StageResponseStarted is emitted for long-running requests (watches,
	// upgraded connections) once the response headers are sent, so that a
	// watch that lasts all session is counted when it starts.
	StageResponseStarted Stage = "ResponseStarted"
	// StageResponseComplete is emitted for every request when it ends, with
	// its final sizes and duration.
	StageResponseComplete Stage = "ResponseComplete"
)

// Identity is who made a request, as far as the proxy knows it. It never
// holds a credential.
type Identity struct {
	Pod            string `json:"pod,omitempty"`
	Namespace      string `json:"namespace,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	User           string `json:"user,omitempty"`
}

// Event is one request seen by the proxy. Headers are never part of it: the
// User-Agent is the only one kept, and the Content-Type with a kept body.
type Event struct {
	// ID identifies the request across its stages.
	ID    uint64 `json:"id"`
	Stage Stage  `json:"stage"`
	// Time is when the request arrived.
	Time     time.Time     `json:"time"`
	Method   string        `json:"method"`
	Path     string        `json:"path"`
	RawQuery string        `json:"query,omitempty"`
	Status   int           `json:"status"`
	Duration time.Duration `json:"duration"`
	// BytesIn and BytesOut count request and response body bytes.
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
	// WatchEvents counts the events streamed by a watch.
	WatchEvents int64 `json:"watchEvents,omitempty"`
	// Upgraded marks a connection upgrade (exec, attach, port-forward).
	Upgraded  bool     `json:"upgraded,omitempty"`
	UserAgent string   `json:"userAgent,omitempty"`
	Client    Identity `json:"client"`
	// Body is the request body when the session keeps bodies: capped, with
	// Secret data replaced by a marker.
	Body []byte `json:"body,omitempty"`
	// BodyTruncated says the body was longer than the cap.
	BodyTruncated bool `json:"bodyTruncated,omitempty"`
	// ContentType is the request's Content-Type, set only when the session
	// keeps bodies: it says how the body is written (an object, or which
	// kind of patch), which field coverage needs to read it.
	ContentType string `json:"contentType,omitempty"`
}

// Observer receives the events of a proxy. Observe must not block the
// request path for long and must not keep ev.Body past the call.
type Observer interface {
	Observe(ev *Event)
}
