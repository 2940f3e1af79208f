package releases

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// TestResolveClusterIncludesCustomResources runs against a real API server:
// a CRD installed after the first resolve shows up in the "cluster" catalog,
// its list operation derived like a built-in one.
func TestResolveClusterIncludesCustomResources(t *testing.T) {
	cfg := testenv.StartForTest(t).Config
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every call checks the cluster's index, as after the TTL.
	r := &Resolver{Discovery: disco, ClusterTTL: time.Nanosecond}
	ctx := context.Background()

	before, err := r.Resolve(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := before.Operation("listCoreV1NamespacedPod"); !ok {
		t.Fatal("the cluster catalog lacks listCoreV1NamespacedPod")
	}
	if _, ok := findList(before, "/apis/example.com/v1/namespaces/{namespace}/widgets"); ok {
		t.Fatal("widgets are in the catalog before their CRD")
	}

	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths: []string{testenv.WidgetsCRD()}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install CRD: %v", err)
	}
	// The API server publishes a new CRD's OpenAPI document shortly after
	// the CRD is established.
	var list catalog.Operation
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		c, err := r.Resolve(ctx, "cluster")
		if err != nil {
			return false, err
		}
		var ok bool
		list, ok = findList(c, "/apis/example.com/v1/namespaces/{namespace}/widgets")
		return ok, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the widgets' list operation never appeared in the cluster catalog")
	}
	if err != nil {
		t.Fatal(err)
	}
	want := catalog.Operation{
		ID: "listExampleComV1NamespacedWidget", Method: "GET", Group: "example.com", Version: "v1",
		Resource: "widgets", Action: "list", Kind: "Widget", Class: catalog.ClassResource, Level: catalog.Stable,
		Namespaced: true, Eligibility: catalog.Eligible, Category: "exampleCom",
	}
	list.Path = ""
	if list != want {
		t.Errorf("list operation = %+v\nwant %+v", list, want)
	}
}

// findList returns the list operation of a collection path.
func findList(c *catalog.Catalog, path string) (catalog.Operation, bool) {
	for _, op := range c.Operations {
		if op.Path == path && op.Action == "list" {
			return op, true
		}
	}
	return catalog.Operation{}, false
}
