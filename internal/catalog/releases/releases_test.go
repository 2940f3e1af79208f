package releases

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// fakeCluster serves /version, the /openapi/v3 index and its documents, like
// an API server, and counts the documents read.
type fakeCluster struct {
	mu          sync.Mutex
	docs        map[string]string // path -> document; hash in the URL is its length
	down        map[string]bool   // paths whose API server is unavailable
	unreachable bool              // every request fails
	fetched     int
}

func (f *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if f.unreachable {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	switch path := strings.TrimPrefix(r.URL.Path, "/openapi/v3"); {
	case r.URL.Path == "/version":
		fmt.Fprint(w, `{"major": "1", "minor": "37", "gitVersion": "v1.37.2"}`)
	case path == "" || path == "/":
		var entries []string
		for p, doc := range f.docs {
			entries = append(entries, fmt.Sprintf(`%q: {"serverRelativeURL": "/openapi/v3/%s?hash=%d"}`, p, p, len(doc)))
		}
		fmt.Fprintf(w, `{"paths": {%s}}`, strings.Join(entries, ","))
	case f.down[strings.TrimPrefix(path, "/")]:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503}`)
	default:
		doc, ok := f.docs[strings.TrimPrefix(path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		f.fetched++
		fmt.Fprint(w, doc)
	}
}

func (f *fakeCluster) set(path, doc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[path] = doc
}

func (f *fakeCluster) fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetched
}

// openAPIDoc is an OpenAPI v3 document with one GET operation per path.
func openAPIDoc(ops map[string]string) string {
	var paths []string
	for path, id := range ops {
		paths = append(paths, fmt.Sprintf(`%q: {"get": {"operationId": %q, "responses": {"200": {"description": "OK"}}, "x-kubernetes-action": "list"}}`, path, id))
	}
	return fmt.Sprintf(`{"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.2"}, "paths": {%s}}`, strings.Join(paths, ","))
}

func newFakeCluster(t *testing.T) (*fakeCluster, discovery.DiscoveryInterface) {
	t.Helper()
	f := &fakeCluster{
		docs: map[string]string{
			"api/v1": openAPIDoc(map[string]string{"/api/v1/namespaces/{namespace}/pods": "listCoreV1NamespacedPod"}),
			"apis/example.com/v1": openAPIDoc(map[string]string{
				"/apis/example.com/v1/namespaces/{namespace}/widgets": "listExampleComV1NamespacedWidget",
			}),
		},
		down: map[string]bool{},
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	disco, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return f, disco
}

func TestResolveEmbeddedRelease(t *testing.T) {
	c, err := (&Resolver{}).Resolve(context.Background(), "1.37")
	if err != nil {
		t.Fatal(err)
	}
	if c.Release != "1.37" || len(c.Operations) == 0 {
		t.Errorf("Resolve(1.37) = release %q with %d operations", c.Release, len(c.Operations))
	}
}

func TestResolveUnsupportedRelease(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resolver *Resolver
		release  string
		want     []string
	}{
		{"a release this build does not embed", &Resolver{}, "1.99",
			[]string{`spec.kubernetesRelease "1.99"`, "1.37", `"cluster"`}},
		{"the cluster without access to it", &Resolver{}, "cluster",
			[]string{"live cluster's API is not available"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.resolver.Resolve(context.Background(), tc.release)
			if !errors.Is(err, catalog.ErrUnsupportedRelease) {
				t.Fatalf("Resolve(%q) error = %v, want ErrUnsupportedRelease", tc.release, err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestResolveClusterReadsEveryDocument(t *testing.T) {
	_, disco := newFakeCluster(t)
	c, err := (&Resolver{Discovery: disco}).Resolve(context.Background(), "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if c.Release != "cluster v1.37.2" {
		t.Errorf("Release = %q, want cluster v1.37.2", c.Release)
	}
	for _, id := range []string{"listCoreV1NamespacedPod", "listExampleComV1NamespacedWidget"} {
		if _, ok := c.Operation(id); !ok {
			t.Errorf("the cluster catalog lacks %s", id)
		}
	}
}

func TestResolveClusterRereadsOnlyWhenTheAPIChanged(t *testing.T) {
	f, disco := newFakeCluster(t)
	r := &Resolver{Discovery: disco, ClusterTTL: time.Hour}
	ctx := context.Background()
	first, err := r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	read := f.fetches()

	again, err := r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if again != first || f.fetches() != read {
		t.Errorf("within the TTL: a new catalog or %d more documents read", f.fetches()-read)
	}

	// Past the TTL with the same index: checked, not read again.
	r.ClusterTTL = time.Nanosecond
	again, err = r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if again != first || f.fetches() != read {
		t.Errorf("unchanged index: a new catalog or %d more documents read", f.fetches()-read)
	}

	// A new custom resource changes a document's hash: built again.
	f.set("apis/example.com/v1", openAPIDoc(map[string]string{
		"/apis/example.com/v1/namespaces/{namespace}/widgets": "listExampleComV1NamespacedWidget",
		"/apis/example.com/v1/namespaces/{namespace}/gadgets": "listExampleComV1NamespacedGadget",
	}))
	changed, err := r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := changed.Operation("listExampleComV1NamespacedGadget"); !ok {
		t.Error("the catalog did not follow the cluster's new operation")
	}
}

func TestResolveClusterLeavesOutUnavailableAPIs(t *testing.T) {
	f, disco := newFakeCluster(t)
	f.down["apis/example.com/v1"] = true
	r := &Resolver{Discovery: disco, ClusterTTL: time.Nanosecond}
	c, err := r.Resolve(context.Background(), "cluster")
	if err != nil {
		t.Fatalf("one unavailable API failed the whole cluster: %v", err)
	}
	if _, ok := c.Operation("listCoreV1NamespacedPod"); !ok {
		t.Error("the available API is missing")
	}

	// Still down: the rest of the API is not read again at every check.
	read := f.fetches()
	if _, err := r.Resolve(context.Background(), "cluster"); err != nil {
		t.Fatal(err)
	}
	if f.fetches() != read {
		t.Errorf("%d documents read again while the same API stays down", f.fetches()-read)
	}

	// Back under the same URL: the check after IncompleteRetry builds the
	// catalog again.
	f.mu.Lock()
	delete(f.down, "apis/example.com/v1")
	f.mu.Unlock()
	r.IncompleteRetry = time.Nanosecond
	c, err = r.Resolve(context.Background(), "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Operation("listExampleComV1NamespacedWidget"); !ok {
		t.Error("the API that came back is still missing")
	}
}

// TestCheckClusterIgnoresTheTTL: the follower's own schedule reads the index
// at every look, whatever the TTL other callers share.
func TestCheckClusterIgnoresTheTTL(t *testing.T) {
	f, disco := newFakeCluster(t)
	r := &Resolver{Discovery: disco, ClusterTTL: time.Hour}
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "cluster"); err != nil {
		t.Fatal(err)
	}
	f.set("apis/example.com/v1", openAPIDoc(map[string]string{
		"/apis/example.com/v1/namespaces/{namespace}/widgets": "listExampleComV1NamespacedWidget",
		"/apis/example.com/v1/namespaces/{namespace}/gadgets": "listExampleComV1NamespacedGadget",
	}))
	cached, err := r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cached.Operation("listExampleComV1NamespacedGadget"); ok {
		t.Fatal("Resolve read the cluster within the TTL")
	}
	checked, err := r.CheckCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := checked.Operation("listExampleComV1NamespacedGadget"); !ok {
		t.Error("CheckCluster did not read the changed API")
	}
}

// TestResolveClusterKeepsTheCatalogWhileTheClusterIsUnreachable: past the
// TTL, a cluster that does not answer leaves the catalog read before in
// use instead of failing every caller.
func TestResolveClusterKeepsTheCatalogWhileTheClusterIsUnreachable(t *testing.T) {
	f, disco := newFakeCluster(t)
	r := &Resolver{Discovery: disco, ClusterTTL: time.Nanosecond}
	ctx := context.Background()
	first, err := r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.unreachable = true
	f.mu.Unlock()
	for _, resolve := range []func() (*catalog.Catalog, error){
		func() (*catalog.Catalog, error) { return r.Resolve(ctx, "cluster") },
		func() (*catalog.Catalog, error) { return r.CheckCluster(ctx) },
	} {
		c, err := resolve()
		if err != nil || c != first {
			t.Errorf("with the cluster unreachable: %v, the catalog read before: %t; want it, no error", err, c == first)
		}
	}

	// Without a catalog read before, the error is the caller's.
	if _, err := (&Resolver{Discovery: disco}).Resolve(ctx, "cluster"); err == nil {
		t.Error("a first read of an unreachable cluster succeeded")
	}
}
