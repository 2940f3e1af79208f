package releases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
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
// its list operation derived like a built-in one, and its body schema read
// from the server's OpenAPI v3 document (checkClusterSchemas).
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
		Paths: []string{testenv.WidgetsCRD(), filepath.Join("testdata", "gadgets.yaml")}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install CRD: %v", err)
	}
	// The API server publishes a new CRD's OpenAPI document shortly after
	// the CRD is established.
	var list catalog.Operation
	var cluster *catalog.Catalog
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		c, err := r.Resolve(ctx, "cluster")
		if err != nil {
			return false, err
		}
		var ok bool
		list, ok = findList(c, "/apis/example.com/v1/namespaces/{namespace}/widgets")
		_, gadgets := findList(c, "/apis/example.com/v1/namespaces/{namespace}/gadgets")
		cluster = c
		return ok && gadgets, nil
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
	checkClusterSchemas(t, cluster)
}

// checkClusterSchemas checks the body schemas of the live cluster's
// catalog: the Gadget's from its CRD, the Widget's that keeps any field,
// and built-in ones equal to the embedded schemas of the same release,
// enums included (the server publishes them; the embedded ones come from
// the Go definitions).
func checkClusterSchemas(t *testing.T, c *catalog.Catalog) {
	t.Helper()
	s, err := c.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Unresolved) != 0 {
		t.Errorf("unresolved references: %v", s.Unresolved)
	}
	const create = "createExampleComV1NamespacedGadget"
	for _, op := range []string{create, "replaceExampleComV1NamespacedGadget", "patchExampleComV1NamespacedGadget",
		"replaceExampleComV1NamespacedGadgetStatus", "patchExampleComV1NamespacedGadgetStatus"} {
		if body, ok := s.Body(op); !ok || body != s.Bodies[create] {
			t.Errorf("%s: body type %d, %v; want the Gadget's %d", op, body, ok, s.Bodies[create])
		}
	}
	for path, want := range map[string]string{
		"apiVersion":          "string",
		"metadata.name":       "string",
		"metadata.finalizers": "array list=set strategy=merge",
		"spec.size":           "string enum=[large medium small]",
		"spec.replicas":       "integer",
		"spec.ratio":          "number",
		"spec.enabled":        "boolean",
		"spec.port":           "int-or-string",
		"spec.tags":           "array list=set",
		"spec.parts":          "array list=map keys=[name]",
		"spec.parts[].count":  "integer",
		"spec.labels{}":       "string",
		"spec.extra":          "object preserve",
		"status.phase":        "string",
	} {
		if got := shape(s, create, path); got != want {
			t.Errorf("Gadget %s: %s, want %s", path, got, want)
		}
	}
	widget, ok := s.Body("createExampleComV1NamespacedWidget")
	if typ := s.Type(widget); !ok || typ.Kind != catalog.KindObject || !typ.PreserveUnknownFields {
		t.Errorf("Widget body %+v, %v: want an object keeping unknown fields", typ, ok)
	}
	if !s.HasFieldPath("createExampleComV1NamespacedWidget", "metadata.labels{}") {
		t.Error("the Widget's schema lacks its metadata")
	}

	embedded, err := catalog.LoadSchemas(testenv.KubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"createAppsV1NamespacedDeployment", "patchAppsV1NamespacedDeployment", "createCoreV1NamespacedPod",
		"replaceCoreV1NamespacedConfigMap", "deleteCoreV1NamespacedPod", "createApiextensionsV1CustomResourceDefinition",
		"createBatchV1NamespacedCronJob", "patchCoreV1NamespacedServiceStatus"} {
		livePaths, wantPaths := s.FieldPaths(op), embedded.FieldPaths(op)
		if len(wantPaths) == 0 || !slices.Equal(livePaths, wantPaths) {
			t.Errorf("%s: %d field paths live, %d embedded", op, len(livePaths), len(wantPaths))
			continue
		}
		for _, path := range wantPaths {
			if live, want := shape(s, op, path), shape(embedded, op, path); live != want {
				t.Errorf("%s %s: %s live, %s embedded", op, path, live, want)
			}
		}
	}
}

// shape describes the type at a field path.
func shape(s *catalog.Schemas, op, path string) string {
	typ, ok := s.FieldType(op, path)
	if !ok {
		return "missing"
	}
	out := typ.Kind.String()
	for _, part := range []struct{ name, value string }{
		{"enum", fmt.Sprint(typ.Enum)}, {"list", typ.ListType}, {"keys", fmt.Sprint(typ.ListMapKeys)},
		{"strategy", typ.PatchStrategy}, {"mergeKey", typ.PatchMergeKey},
	} {
		if part.value != "" && part.value != "[]" {
			out += " " + part.name + "=" + part.value
		}
	}
	if typ.PreserveUnknownFields {
		out += " preserve"
	}
	return out
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
