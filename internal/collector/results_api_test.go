package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// embeddedReleases resolves the releases compiled into the operator.
type embeddedReleases struct{}

func (embeddedReleases) Resolve(_ context.Context, release string) (*catalog.Catalog, error) {
	return catalog.Load(release)
}

// countedTokenReviews counts the TokenReviews made.
type countedTokenReviews struct {
	authenticationv1client.TokenReviewInterface
	n atomic.Int64
}

func (c *countedTokenReviews) Create(ctx context.Context, tr *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	c.n.Add(1)
	return c.TokenReviewInterface.Create(ctx, tr, opts)
}

// resultsFixture is a control plane with sessions, an aggregator holding
// their results and the API served over HTTP.
type resultsFixture struct {
	t         *testing.T
	ctx       context.Context
	cp        *testenv.ControlPlane // its Client is the admin's, uncached
	clientset *kubernetes.Clientset
	agg       *collector.Aggregator
	reviews   *countedTokenReviews
	server    *httptest.Server
}

func newResultsFixture(t *testing.T) *resultsFixture {
	t.Helper()
	cp := sharedControlPlane.Get(t)
	clientset, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	f := &resultsFixture{t: t, ctx: t.Context(), cp: cp, clientset: clientset, agg: collector.NewAggregator(),
		reviews: &countedTokenReviews{TokenReviewInterface: clientset.AuthenticationV1().TokenReviews()}}
	// Under ResultsPathPrefix, as the manager registers it on its webhook
	// server.
	mux := http.NewServeMux()
	mux.Handle(collector.ResultsPathPrefix, &collector.ResultsAPI{
		Client:     cp.Client,
		Aggregator: f.agg,
		Releases:   embeddedReleases{},
		Access: &collector.Access{
			TokenReviews: f.reviews,
			Reviews:      clientset.AuthorizationV1().SubjectAccessReviews(),
		},
	})
	f.server = httptest.NewServer(mux)
	t.Cleanup(f.server.Close)
	return f
}

// namespace creates a fresh namespace.
func (f *resultsFixture) namespace() string {
	f.t.Helper()
	ns, err := f.cp.Namespace(f.ctx, "results", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return ns
}

// session creates a SnoopSession measured against 1.37.
func (f *resultsFixture) session(ns, name string) types.NamespacedName {
	f.t.Helper()
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37"},
	}
	if err := f.cp.Client.Create(f.ctx, s); err != nil {
		f.t.Fatal(err)
	}
	return client.ObjectKeyFromObject(s)
}

// serviceAccount creates a service account and returns a token of it for
// the API server's audience. With canGet, a Role lets it get the
// SnoopSessions of its namespace, and serviceAccount waits until the API
// server's authorizer says so.
func (f *resultsFixture) serviceAccount(ns, name string, canGet bool) string {
	f.t.Helper()
	if err := f.cp.Client.Create(f.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
		f.t.Fatal(err)
	}
	if canGet {
		f.grant(ns, name, "")
	}
	token, err := f.clientset.CoreV1().ServiceAccounts(ns).CreateToken(f.ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return token.Status.Token
}

// grant lets a service account get the SnoopSessions (or their
// subresource) of its namespace, and waits until the API server's
// authorizer says so: the handler must not keep a denial from before the
// binding arrived in the authorizer's informers.
func (f *resultsFixture) grant(ns, name, subresource string) {
	f.t.Helper()
	resource := "snoopsessions"
	if subresource != "" {
		resource += "/" + subresource
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-gets-" + strings.ReplaceAll(resource, "/", "-"), Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{snoopv1alpha1.GroupVersion.Group},
			Resources: []string{resource}, Verbs: []string{"get"}}},
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
					Resource: "snoopsessions", Subresource: subresource, Verb: "get", Namespace: ns},
			},
		}, metav1.CreateOptions{})
		return err == nil && sar.Status.Allowed, nil
	})
	if err != nil {
		f.t.Fatalf("the binding of %s/%s to %s never took effect: %v", ns, name, resource, err)
	}
}

// get asks for a session's results with a token ("" for none) and query.
func (f *resultsFixture) get(session types.NamespacedName, token, query string) (int, http.Header, string) {
	f.t.Helper()
	u := f.server.URL + collector.ResultsPathPrefix + session.Namespace + "/" + session.Name + "/results"
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, u, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// sampleDelta is five requests: three to two stable operations, one
// failed, one unknown to the release.
func sampleDelta() coverage.Delta {
	var d coverage.Delta
	robot := coverage.Client{Pod: "web-1", Namespace: "shop", ServiceAccount: "robot", UserAgent: "controller/v1"}
	for _, h := range []coverage.Hit{
		{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200, Client: robot},
		{OperationID: "listCoreV1NamespacedPod", Verb: "watch", Status: 200, Client: robot},
		{OperationID: "readCoreV1NamespacedPod", Verb: "get", Status: 404, Client: robot},
		{OperationID: "createAppsV1NamespacedDeployment", Verb: "create", Status: 201, Client: robot},
		{Unknown: "GET /apis/example.com/v1/namespaces/{namespace}/widgets", Verb: "list", Status: 200, Client: robot},
	} {
		d.Add(h)
	}
	return d
}

func TestResultsAPI(t *testing.T) {
	f := newResultsFixture(t)
	ns, other := f.namespace(), f.namespace()
	session, elsewhere := f.session(ns, "session"), f.session(other, "session")
	for _, key := range []types.NamespacedName{session, elsewhere} {
		f.agg.Restore(key, &results.State{Delta: sampleDelta()})
	}
	reader := f.serviceAccount(ns, "reader", true)
	nobody := f.serviceAccount(ns, "nobody", false)

	t.Run("a reader gets the numbers as JSON", func(t *testing.T) {
		status, header, body := f.get(session, reader, "")
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", status, body)
		}
		if ct := header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var rep coverage.Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("decode the report: %v\n%.400s", err, body)
		}
		s := rep.Summary
		if s.Release != "1.37" || s.Requests != 5 || s.FailedRequests != 1 || s.UnknownRequests != 1 || s.Eligible.Hit != 3 {
			t.Errorf("summary %+v, want release 1.37, 5 requests, 1 failed, 1 unknown, 3 eligible operations hit", s)
		}
		hits := map[string]int64{}
		for _, op := range rep.Hit() {
			hits[op.ID] = op.Hits
		}
		want := map[string]int64{"listCoreV1NamespacedPod": 2, "readCoreV1NamespacedPod": 1, "createAppsV1NamespacedDeployment": 1}
		if fmt.Sprint(hits) != fmt.Sprint(want) {
			t.Errorf("operations hit %v, want %v", hits, want)
		}
		if len(rep.Untested) != s.Eligible.Operations-3 {
			t.Errorf("%d untested operations, want %d", len(rep.Untested), s.Eligible.Operations-3)
		}
	})

	t.Run("markdown is report.md, untested listed", func(t *testing.T) {
		status, header, body := f.get(session, reader, "format=markdown")
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", status, body)
		}
		if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/markdown") {
			t.Errorf("Content-Type %q, want text/markdown", ct)
		}
		for _, want := range []string{"# API coverage of Kubernetes 1.37", "5 requests, 1 failed, 1 unknown",
			"| 2 | stable (eligible) | `listCoreV1NamespacedPod` |", "## Eligible operations not hit"} {
			if !strings.Contains(body, want) {
				t.Errorf("markdown lacks %q:\n%.800s", want, body)
			}
		}
		_, _, body = f.get(session, reader, "format=markdown&untested=false")
		if strings.Contains(body, "## Eligible operations not hit") {
			t.Error("untested=false still lists the untested operations")
		}
	})

	t.Run("the live results, not a copy", func(t *testing.T) {
		more := sampleDelta()
		if _, _, err := f.agg.Accept(session, intake.Batch{Source: "pod-uid", Seq: 1, Release: "1.37", Delta: &more}, false); err != nil {
			t.Fatal(err)
		}
		_, _, body := f.get(session, reader, "format=table")
		if !strings.Contains(body, "10 requests, 2 failed, 2 unknown") {
			t.Errorf("after a batch the table says:\n%.300s", body)
		}
	})

	for _, tc := range []struct {
		name, token string
		session     types.NamespacedName
		want        int
	}{
		{"no token", "", session, http.StatusUnauthorized},
		{"a forged token", "not-a-token", session, http.StatusUnauthorized},
		{"a service account without the right", nobody, session, http.StatusForbidden},
		{"another namespace's session", reader, elsewhere, http.StatusForbidden},
		{"a session that does not exist, to a reader", reader, types.NamespacedName{Namespace: ns, Name: "missing"}, http.StatusNotFound},
		{"a session that does not exist, to a stranger", nobody, types.NamespacedName{Namespace: ns, Name: "missing"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, header, body := f.get(tc.session, tc.token, "")
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", header.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, "listCoreV1NamespacedPod") {
				t.Errorf("a refusal carries results: %s", body)
			}
		})
	}

	t.Run("formats", func(t *testing.T) {
		for _, tc := range []struct {
			query, contentType string
			status             int
			untested           bool
		}{
			{"format=json", "application/json", http.StatusOK, true},
			{"format=md", "text/markdown; charset=utf-8", http.StatusOK, true},
			{"format=table", "text/plain; charset=utf-8", http.StatusOK, false},
			{"format=table&untested", "text/plain; charset=utf-8", http.StatusOK, true},
			{"format=table&untested=true", "text/plain; charset=utf-8", http.StatusOK, true},
			{"format=table&untested=maybe", "", http.StatusBadRequest, false},
			{"format=html", "", http.StatusBadRequest, false},
		} {
			status, header, body := f.get(session, reader, tc.query)
			if status != tc.status {
				t.Errorf("?%s: status %d, want %d: %.200s", tc.query, status, tc.status, body)
				continue
			}
			if status != http.StatusOK {
				continue
			}
			if ct := header.Get("Content-Type"); ct != tc.contentType {
				t.Errorf("?%s: Content-Type %q, want %q", tc.query, ct, tc.contentType)
			}
			// Every format names an eligible operation nobody hit only
			// when it lists them.
			if got := strings.Contains(body, "deleteCoreV1CollectionNamespacedPod"); got != tc.untested {
				t.Errorf("?%s: untested operations listed %v, want %v", tc.query, got, tc.untested)
			}
		}
	})

	t.Run("verdicts are kept", func(t *testing.T) {
		before := f.reviews.n.Load()
		for range 3 {
			if status, _, body := f.get(session, reader, ""); status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			if status, _, _ := f.get(session, nobody, ""); status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", status)
			}
		}
		if n := f.reviews.n.Load() - before; n != 0 {
			t.Errorf("%d TokenReviews for tokens reviewed before, want 0", n)
		}
	})
}

func TestResultsAPINotLoaded(t *testing.T) {
	f := newResultsFixture(t)
	ns := f.namespace()
	session := f.session(ns, "session")
	reader := f.serviceAccount(ns, "reader", true)

	status, header, body := f.get(session, reader, "")
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" {
		t.Fatalf("before the results are loaded: status %d, Retry-After %q, want 503 and a Retry-After: %s", status, header.Get("Retry-After"), body)
	}
	if !strings.Contains(body, "not loaded yet") || !strings.Contains(body, "not Ready") {
		t.Errorf("the 503 does not say why: %s", body)
	}
	f.agg.Restore(session, nil)
	if status, _, body := f.get(session, reader, "format=json"); status != http.StatusOK {
		t.Fatalf("once loaded: status %d, want 200: %s", status, body)
	}
}

func TestResultsPaths(t *testing.T) {
	a := &collector.ResultsAPI{Access: &collector.Access{}} // every request here is refused before it is used
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/sessions/ns/name/results", http.StatusUnauthorized},
		{http.MethodHead, "/sessions/ns/name/results", http.StatusUnauthorized},
		{http.MethodPost, "/sessions/ns/name/results", http.StatusMethodNotAllowed},
		{http.MethodGet, "/sessions/ns/name/page", http.StatusOK}, // holds no results: served to anyone
		{http.MethodHead, "/sessions/ns/name/page", http.StatusOK},
		{http.MethodPost, "/sessions/ns/name/page", http.StatusMethodNotAllowed},
		{http.MethodGet, "/sessions/ns/name/page/more", http.StatusNotFound},
		{http.MethodGet, "/sessions/ns/name", http.StatusNotFound},
		{http.MethodGet, "/sessions/ns/name/results/more", http.StatusNotFound},
		{http.MethodGet, "/sessions//name/results", http.StatusNotFound},
		{http.MethodGet, "/sessions/ns/name/status", http.StatusNotFound},
		{http.MethodGet, "/other/ns/name/results", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
}
