package proxytest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/record"
)

// EventLog is an Observer that keeps copies of all events.
type EventLog struct {
	mu     sync.Mutex
	events []record.Event
	added  chan struct{} // signalled (non-blocking) on every event
}

// NewEventLog is an empty EventLog.
func NewEventLog() *EventLog { return &EventLog{added: make(chan struct{}, 1)} }

func (l *EventLog) Observe(ev *record.Event) {
	cp := *ev
	cp.Body = slices.Clone(ev.Body) // Observe must not keep ev.Body
	l.mu.Lock()
	l.events = append(l.events, cp)
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
}

// All is a copy of the events so far.
func (l *EventLog) All() []record.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// WaitFor waits until some event matches, and returns it; what names the
// event in the failure.
func (l *EventLog) WaitFor(t testing.TB, what string, match func(record.Event) bool) record.Event {
	t.Helper()
	deadline := time.After(WaitLimit)
	for {
		for _, ev := range l.All() {
			if match(ev) {
				return ev
			}
		}
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no event %s among %d events", what, len(l.All()))
		}
	}
}

// CompleteFor matches the completion of method on path.
func CompleteFor(method, path string) func(record.Event) bool {
	return func(ev record.Event) bool {
		return ev.Stage == record.StageResponseComplete && ev.Method == method && ev.Path == path
	}
}
