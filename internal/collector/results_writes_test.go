package collector_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/results"
)

// getWrites asks for a session's writes with a token.
func (f *resultsFixture) getWrites(session string, token string) (int, http.Header, string) {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.server.URL+collector.ResultsPathPrefix+session+"/writes", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
	return resp.StatusCode, resp.Header, body.String()
}

// The writes a session kept are served as an audit log to whoever may get
// snoopsessions/history, and to nobody who may only read the coverage.
func TestResultsAPIWrites(t *testing.T) {
	f := newResultsFixture(t)
	ns := f.namespace()
	key := f.session(ns, "session")
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	d := sampleDelta()
	d.AddWrite(coverage.Write{ID: "b", Received: at.Add(time.Second), Completed: at.Add(time.Second + time.Millisecond),
		Verb: "patch", Version: "v1", Resource: "configmaps", Namespace: ns, Name: "c", Status: 200,
		RequestURI: "/api/v1/namespaces/" + ns + "/configmaps/c", User: "system:serviceaccount:" + ns + ":app", UserAgent: "app/1",
		Request: []byte(`{"data":{"k":"v2"}}`)})
	d.AddWrite(coverage.Write{ID: "a", Received: at, Completed: at.Add(time.Millisecond),
		Verb: "create", Version: "v1", Resource: "configmaps", Namespace: ns, Name: "c", Status: 201,
		RequestURI: "/api/v1/namespaces/" + ns + "/configmaps", User: "system:serviceaccount:" + ns + ":app", UserAgent: "app/1",
		Request: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}`)})
	d.WritesDropped = 3
	f.agg.Restore(key, &results.State{Delta: d})

	reader := f.serviceAccount(ns, "reader", true)
	historian := f.serviceAccount(ns, "historian", false)
	f.grant(ns, "historian", collector.HistorySubresource)

	if status, _, body := f.getWrites(key.String(), reader); status != http.StatusForbidden || !strings.Contains(body, "snoopsessions/history") {
		t.Errorf("a reader of the coverage: status %d, want 403 naming snoopsessions/history: %s", status, body)
	}
	status, header, body := f.getWrites(key.String(), historian)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if header.Get("Content-Type") != "application/jsonl" || header.Get(collector.WritesDroppedHeader) != "3" || header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", header)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), body)
	}
	for i, want := range []struct{ id, verb, name string }{{"a", "create", "c"}, {"b", "patch", "c"}} {
		var ev auditv1.Event
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatal(err)
		}
		if string(ev.AuditID) != want.id || ev.Verb != want.verb || ev.ObjectRef.Name != want.name || ev.Stage != auditv1.StageResponseComplete ||
			ev.Level != auditv1.LevelRequest || ev.RequestObject == nil || ev.User.Username != "system:serviceaccount:"+ns+":app" {
			t.Errorf("line %d: %s", i+1, lines[i])
		}
	}
}
