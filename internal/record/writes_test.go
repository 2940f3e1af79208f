package record

import (
	"strings"
	"testing"
	"time"
)

func TestRecorderKeepsWrites(t *testing.T) {
	rec := newTestRecorder(t).KeepWrites()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	events := []*Event{
		bodyEvent(1, "POST", configMapsPath, "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}`),
		bodyEvent(2, "PATCH", configMapsPath+"/a", "application/merge-patch+json", `{"data":{"k":"v2"}}`),
		bodyEvent(3, "PATCH", deploymentPath+"/scale", "application/merge-patch+json", `{"spec":{"replicas":3}}`),
		{ID: 4, Stage: StageResponseComplete, Method: "DELETE", Path: configMapsPath + "/a", Status: 200},
		// Not writes: a read, a deletecollection.
		{ID: 5, Stage: StageResponseComplete, Method: "GET", Path: configMapsPath + "/a", Status: 200},
		{ID: 6, Stage: StageResponseComplete, Method: "DELETE", Path: configMapsPath, Status: 200},
		// A custom resource the release does not know: its history needs
		// no operation.
		bodyEvent(7, "POST", "/apis/example.com/v1/namespaces/n/widgets", "application/json", `{"metadata":{"name":"w"}}`),
		// A protobuf create (its name read from the message, the body not
		// kept) and an update cut by the cap: the writes, without bodies.
		// runtime.Unknown{raw: ConfigMap{metadata: ObjectMeta{name: "p"}}}.
		bodyEvent(8, "POST", configMapsPath, "application/vnd.kubernetes.protobuf", "k8s\x00\x12\x05\x0a\x03\x0a\x01p"),
		bodyEvent(9, "PUT", configMapsPath+"/b", "application/json", `{"metadata":{"name":"b"},"data":{"k":"`),
		// A Secret: never its body.
		bodyEvent(10, "POST", "/api/v1/namespaces/n/secrets", "application/json", `{"metadata":{"name":"s"},"data":{"k":"bWFya2Vy"}}`),
	}
	events[8].BodyTruncated = true
	for i, ev := range events {
		ev.Time = at.Add(time.Duration(i) * time.Second)
		ev.Duration = time.Millisecond
		ev.UserAgent = "kubectl/v1.37.2"
		ev.RawQuery = ""
		ev.Client.Namespace, ev.Client.ServiceAccount = "n", "app"
		rec.Observe(ev)
	}
	d := rec.Take()
	type want struct{ verb, resource, subresource, name, request string }
	wants := []want{
		{"create", "configmaps", "", "a", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}`},
		{"patch", "configmaps", "", "a", `{"data":{"k":"v2"}}`},
		{"patch", "deployments", "scale", "web", `{"spec":{"replicas":3}}`},
		{"delete", "configmaps", "", "a", ""},
		{"create", "widgets", "", "w", `{"metadata":{"name":"w"}}`},
		{"create", "configmaps", "", "p", ""},
		{"update", "configmaps", "", "b", ""},
		{"create", "secrets", "", "s", ""},
	}
	if len(d.Writes) != len(wants) {
		t.Fatalf("%d writes, want %d: %+v", len(d.Writes), len(wants), d.Writes)
	}
	for i, w := range d.Writes {
		got := want{w.Verb, w.Resource, w.Subresource, w.Name, string(w.Request)}
		if got != wants[i] {
			t.Errorf("write %d: %+v, want %+v", i, got, wants[i])
		}
		if w.User != "system:serviceaccount:n:app" || w.UserAgent != "kubectl/v1.37.2" || w.Namespace != "n" || w.Status != events[0].Status && w.Status != 200 {
			t.Errorf("write %d: user %q, user agent %q, namespace %q, status %d", i, w.User, w.UserAgent, w.Namespace, w.Status)
		}
		if !w.Completed.Equal(w.Received.Add(time.Millisecond)) || !strings.HasSuffix(w.ID, "-"+[]string{"1", "2", "3", "4", "7", "8", "9", "10"}[i]) {
			t.Errorf("write %d: ID %s, received %s, completed %s", i, w.ID, w.Received, w.Completed)
		}
	}
	if d.Requests != int64(len(events)) {
		t.Errorf("%d requests, want %d", d.Requests, len(events))
	}
	// The recorder keeps its own copy of each body: the proxy reuses its
	// buffers.
	events[0].Body[2] = 'X'
	if strings.Contains(string(d.Writes[0].Request), "X") {
		t.Error("the write shares the event's body")
	}

	// Without KeepWrites, none.
	plain := newTestRecorder(t)
	plain.Observe(bodyEvent(1, "POST", configMapsPath, "application/json", `{"metadata":{"name":"a"}}`))
	if d := plain.Take(); len(d.Writes) != 0 {
		t.Errorf("writes kept without KeepWrites: %+v", d.Writes)
	}
}
