package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
	"apisnoop.dev/kube-apisnoop/internal/auditscope"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// The refusals that come before a batch's token is reviewed: their status,
// their Retry-After, and a metav1.Status body the API server's webhook
// client reads. (test/auditsink drives the whole sink from a real API
// server.)
func TestAuditSinkRefusesBeforeReading(t *testing.T) {
	notLeader := make(chan struct{})
	for _, tc := range []struct {
		name       string
		sink       *AuditSink
		method     string
		length     int64
		busy       int64 // bytes already in flight
		want       int
		retryAfter bool
	}{
		{name: "GET", sink: &AuditSink{}, method: http.MethodGet, want: http.StatusMethodNotAllowed},
		{name: "not the leader", sink: &AuditSink{Elected: notLeader}, method: http.MethodPost, length: 100, want: http.StatusServiceUnavailable, retryAfter: true},
		{name: "larger than a batch may be", sink: &AuditSink{MaxBytes: 1000}, method: http.MethodPost, length: 1001, want: http.StatusRequestEntityTooLarge},
		{name: "too much in flight", sink: &AuditSink{MaxBytes: 1000, MaxBytesInFlight: 1500}, method: http.MethodPost, length: 600, busy: 1000, want: http.StatusTooManyRequests, retryAfter: true},
		{name: "unknown length, budget taken", sink: &AuditSink{MaxBytes: 1000, MaxBytesInFlight: 1500}, method: http.MethodPost, length: -1, busy: 600, want: http.StatusTooManyRequests, retryAfter: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sink.init()
			if tc.busy > 0 {
				release, ok := tc.sink.take(tc.busy)
				if !ok {
					t.Fatal("could not take the busy bytes")
				}
				defer release()
			}
			req := httptest.NewRequest(tc.method, AuditPath, strings.NewReader("{}"))
			req.ContentLength = tc.length
			rec := httptest.NewRecorder()
			tc.sink.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if got := rec.Header().Get("Retry-After") != ""; got != tc.retryAfter {
				t.Errorf("Retry-After set: %t, want %t", got, tc.retryAfter)
			}
			if tc.method != http.MethodPost {
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" || int(st.Code) != tc.want {
				t.Errorf("body %q is not a Status with code %d (%v)", rec.Body, tc.want, err)
			}
			if tc.retryAfter && (st.Details == nil || st.Details.RetryAfterSeconds == 0) {
				t.Errorf("a %d Status must say when to retry: %+v", tc.want, st.Details)
			}
		})
	}
}

// The bytes in flight are given back, so that refusals do not last.
func TestAuditSinkTakeReleases(t *testing.T) {
	s := &AuditSink{MaxBytes: 100, MaxBytesInFlight: 150}
	s.init()
	first, ok := s.take(100)
	if !ok {
		t.Fatal("the first batch must fit")
	}
	if _, ok := s.take(100); ok {
		t.Fatal("a second batch must not fit while the first is in flight")
	}
	first()
	second, ok := s.take(100)
	if !ok {
		t.Fatal("room must be back once the first batch is done")
	}
	second()
}

// The sink's field coverage equals what `kubectl snoop coverage
// --audit-log` reads from the same events (audit.AnalyzeSources): each
// counted request's body once, whatever its stages, duplicates and retried
// batches, walked concurrently by batches; sessions sharing a catalog get
// the same fields, and a session whose catalog has no schemas gets its
// requests and no fields.
func TestAuditSinkFieldsMatchAuditLog(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := catalog.Encode(cat)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := catalog.Decode(encoded) // a catalog without schemas
	if err != nil {
		t.Fatal(err)
	}
	const (
		create = "/api/v1/namespaces/ns/configmaps?fieldManager=kubectl-create"
		patch  = "/api/v1/namespaces/ns/configmaps/cm?fieldManager=kubectl-patch"
		apply  = "/api/v1/namespaces/ns/configmaps/cm?fieldManager=kubectl&force=false"
		update = "/api/v1/namespaces/ns/configmaps/cm?fieldManager=kubectl-edit"
	)
	requests := []struct{ verb, uri, body string }{
		{"create", create, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","colour":"blue"},"data":{"k":"v"},"immutable":"yes"}`},
		{"update", update, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","labels":{"a":"b"}},"data":{"k":"w"}}`},
		{"patch", patch, `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`},
		{"patch", patch, `{"data":{"$patch":"replace","k":"v"}}`},
		{"patch", apply, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"binaryData":{"b":"eA=="}}`},
		{"patch", patch, `[{"path":"/data"}]`}, // no op: malformed
		{"patch", patch, `null`},
		{"get", "/api/v1/namespaces/ns/configmaps/cm", ""},
	}
	var events []string
	for round := range 4 {
		for i, r := range requests {
			for _, user := range []string{"tester", "other"} {
				id := fmt.Sprintf("%s-%d-%d", user, round, i)
				events = append(events,
					auditgen.BodyEvent(id, audit.StageRequestReceived, r.verb, user, r.uri, ""),
					auditgen.BodyEvent(id, audit.StageResponseComplete, r.verb, user, r.uri, r.body))
			}
		}
	}
	// Batches of 5 events; every third one sent twice, as the API server
	// retries a batch it got no answer for.
	var batches []string
	for start := 0; start < len(events); start += 5 {
		b := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(events[start:min(start+5, len(events))], ",") + "]}"
		batches = append(batches, b)
		if len(batches)%3 == 0 {
			batches = append(batches, b)
		}
	}

	sink := &AuditSink{}
	sink.init()
	selector := func(users ...string) *auditscope.Selector {
		return auditscope.NewSelector(&snoopv1alpha1.SnoopSession{Spec: snoopv1alpha1.SnoopSessionSpec{Audit: &snoopv1alpha1.AuditFilter{Users: users}}})
	}
	sessions := []auditSession{
		{selector: selector("tester"), catalog: sink.catalog(cat)},
		{selector: selector("tester", "other"), catalog: sink.catalog(cat)},
		{selector: selector("tester"), catalog: sink.catalog(bare)},
	}
	bodies := func(result string) float64 { return testutil.ToFloat64(AuditBodiesTotal.WithLabelValues(result)) }
	walkedBefore, malformedBefore, unreadBefore := bodies("walked"), bodies("malformed"), bodies("unread")
	got := make([]coverage.Delta, len(sessions))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, b := range batches {
		list, err := sink.read(httptest.NewRequest(http.MethodPost, AuditPath, strings.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			deltas := sink.count(list.Items, sessions)
			mu.Lock()
			defer mu.Unlock()
			for i := range deltas {
				got[i].Merge(&deltas[i])
			}
		}()
	}
	wg.Wait()

	analyze := func(c *catalog.Catalog, users ...string) coverage.Delta {
		t.Helper()
		log := strings.Join(events, "\n") + "\n"
		src := audit.Source{Name: "log", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(log)), nil }}
		var d coverage.Delta
		_, err := audit.AnalyzeSources(t.Context(), []audit.Source{src}, match.New(c), &d, audit.Options{
			Select: func(user, _, _ string) bool { return slices.Contains(users, user) },
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for i, want := range []coverage.Delta{analyze(cat, "tester"), analyze(cat, "tester", "other"), analyze(bare, "tester")} {
		if got[i].Requests != want.Requests || !reflect.DeepEqual(got[i].Operations, want.Operations) {
			t.Errorf("session %d: %d requests, operations %v; the audit log: %d, %v", i, got[i].Requests, got[i].Operations, want.Requests, want.Operations)
		}
		if !reflect.DeepEqual(got[i].Fields, want.Fields) {
			t.Errorf("session %d: fields\n%s\nthe audit log's\n%s", i, fieldsString(got[i].Fields), fieldsString(want.Fields))
		}
	}
	// The comparison is not vacuous: the log's cases are all there.
	want := got[0].Fields
	if c := want["createCoreV1NamespacedConfigMap"]; c == nil || c.Bodies != 4 || c.Unknown["metadata.colour"] != 4 || c.IllTyped["immutable"] != 4 || c.Set["data{}"] != 4 {
		t.Errorf("create's fields: %s", fieldsString(want))
	}
	if p := want["patchCoreV1NamespacedConfigMap"]; p == nil || p.Bodies != 16 || p.Malformed != 4 || p.Set["binaryData{}"] != 4 || p.Set["metadata.labels{}"] != 4 {
		t.Errorf("patch's fields: %s", fieldsString(want))
	}
	if u := want["replaceCoreV1NamespacedConfigMap"]; u == nil || u.Set["metadata.labels{}"] != 4 {
		t.Errorf("update's fields: %s", fieldsString(want))
	}
	if got[1].Fields["createCoreV1NamespacedConfigMap"].Bodies != 8 {
		t.Errorf("the session of both users: %s", fieldsString(got[1].Fields))
	}
	if len(got[2].Fields) != 0 || got[2].Requests != got[0].Requests {
		t.Errorf("the session without schemas: %d requests, fields %s", got[2].Requests, fieldsString(got[2].Fields))
	}
	// The metric: against the catalog with schemas, both users' bodies
	// (the malformed patch, 4 rounds of 2 users, among them); against the
	// one without, the bodies of the one user its session selects, unread.
	if walked, malformed, unread := bodies("walked")-walkedBefore, bodies("malformed")-malformedBefore, bodies("unread")-unreadBefore; walked == 0 || malformed != 8 || unread != (walked+malformed)/2 {
		t.Errorf("apisnoop_audit_request_bodies_total: walked %v, malformed %v, unread %v", walked, malformed, unread)
	}
}

func fieldsString(f map[string]*coverage.FieldCounts) string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(f)) {
		fmt.Fprintf(&b, "%s: %+v\n", id, *f[id])
	}
	return b.String()
}

// TestAuditSinkTakesOnlyAllowedNamespaces: a session whose status says it
// records the audit stream gets nothing outside the namespaces that may
// take it, whoever wrote that status.
func TestAuditSinkTakesOnlyAllowedNamespaces(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	session := func(namespace string, source snoopv1alpha1.SourceKind) *snoopv1alpha1.SnoopSession {
		s := &snoopv1alpha1.SnoopSession{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: namespace},
			Spec:       snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37", Source: source},
		}
		s.Status.Conditions = []metav1.Condition{{Type: snoopv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: snoopv1alpha1.ReasonReleaseResolved}}
		return s
	}
	sink := &AuditSink{Namespaces: auditscope.Namespaces{"apisnoop-system"}}
	for _, c := range []struct {
		session *snoopv1alpha1.SnoopSession
		want    bool
	}{
		{session("apisnoop-system", snoopv1alpha1.SourceAudit), true},
		{session("team-a", snoopv1alpha1.SourceAudit), false},
		{session("apisnoop-system", snoopv1alpha1.SourcePods), false},
	} {
		if got := sink.takes(c.session, now); got != c.want {
			t.Errorf("takes(%s/%s, source %q) = %v, want %v", c.session.Namespace, c.session.Name, c.session.Spec.Source, got, c.want)
		}
	}
	if (&AuditSink{}).takes(session("apisnoop-system", snoopv1alpha1.SourceAudit), now) {
		t.Error("a sink without namespaces takes an audit session")
	}
}
