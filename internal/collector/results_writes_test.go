package collector_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/results"
)

// grantHistory lets a service account get snoopsessions/history in its
// namespace, and waits until the API server's authorizer says so.
func (f *resultsFixture) grantHistory(ns, name string) {
	f.t.Helper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-reads-history", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{snoopv1alpha1.GroupVersion.Group},
			Resources: []string{"snoopsessions/" + collector.HistorySubresource}, Verbs: []string{"get"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := f.cp.Client.Create(f.ctx, obj); err != nil {
			f.t.Fatal(err)
		}
	}
	err := wait.PollUntilContextTimeout(f.ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		sar, err := f.clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User: "system:serviceaccount:" + ns + ":" + name,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Group: snoopv1alpha1.GroupVersion.Group,
					Resource: "snoopsessions", Subresource: collector.HistorySubresource, Verb: "get", Namespace: ns},
			},
		}, metav1.CreateOptions{})
		return err == nil && sar.Status.Allowed, nil
	})
	if err != nil {
		f.t.Fatalf("the history binding of %s/%s never took effect: %v", ns, name, err)
	}
}

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
	f.grantHistory(ns, "historian")

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
