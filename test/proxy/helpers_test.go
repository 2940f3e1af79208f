package proxy_test

import (
	"encoding/json"
	"sync"

	"apisnoop.dev/kube-apisnoop/internal/record"
)

// tee hands each event to several observers.
type tee []record.Observer

func (t tee) Observe(ev *record.Event) {
	for _, o := range t {
		o.Observe(ev)
	}
}

// eventLog keeps every event as the JSON a user could ever see of it.
type eventLog struct {
	mu   sync.Mutex
	json [][]byte
}

func (l *eventLog) Observe(ev *record.Event) {
	data, _ := json.Marshal(ev)
	l.mu.Lock()
	l.json = append(l.json, data)
	l.mu.Unlock()
}

func (l *eventLog) all() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.json...)
}
