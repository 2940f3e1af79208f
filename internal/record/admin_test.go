package record

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// TestAdminHandlerPublishesNoIdentities: the admin handler is on the pod
// network, for probes and Prometheus; who called the API is only in
// /results.
func TestAdminHandlerPublishesNoIdentities(t *testing.T) {
	rec := newTestRecorder(t)
	rec.Observe(&Event{ID: 1, Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces/a/pods", Status: 200,
		UserAgent: "secret-agent/1", Client: Identity{Pod: "p", Namespace: "n", ServiceAccount: "robot"}})
	admin := AdminHandler(rec.metrics)
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/healthz", http.StatusOK},
		{"/readyz", http.StatusOK},
		{"/metrics", http.StatusOK},
		{"/results", http.StatusNotFound},
		{"/results?format=markdown", http.StatusNotFound},
	} {
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if w.Code != tc.want {
			t.Errorf("GET %s = %d, want %d", tc.path, w.Code, tc.want)
		}
		if body := w.Body.String(); strings.Contains(body, "robot") || strings.Contains(body, "secret-agent") {
			t.Errorf("GET %s publishes a client identity:\n%s", tc.path, body)
		}
	}
}

func TestResultsHandlerReportsClients(t *testing.T) {
	rec := newTestRecorder(t)
	rec.Observe(&Event{ID: 1, Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces/a/pods", Status: 200,
		UserAgent: "agent/1", Client: Identity{Pod: "p", Namespace: "n", ServiceAccount: "robot"}})
	results := ResultsHandler(rec, nil)

	w := httptest.NewRecorder()
	results.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/results", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /results = %d", w.Code)
	}
	var rep coverage.Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Requests != 1 || len(rep.Clients) != 1 || rep.Clients[0].ServiceAccount != "robot" {
		t.Errorf("report: %d requests, clients %+v", rep.Summary.Requests, rep.Clients)
	}

	w = httptest.NewRecorder()
	results.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/results?format=markdown", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "listCoreV1NamespacedPod") {
		t.Errorf("GET /results?format=markdown = %d:\n%s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	results.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("the results handler serves /healthz: %d", w.Code)
	}
}
