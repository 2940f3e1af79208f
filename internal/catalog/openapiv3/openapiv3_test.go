package openapiv3

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/kubesource"
)

// A trimmed-down swagger.json in the shape the API server serves: core
// pods, a legacy watch, a node proxy (listed ineligible in 1.36), discovery,
// a non-resource URL, and a CRD-like group serving only example.com/v1beta1.
var swaggerDoc = readTestdata("../testdata/mini-swagger.json")

// readTestdata reads a fixture shared by the catalog packages' tests.
func readTestdata(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return string(data)
}

// The same operations split into OpenAPI v3 documents, keyed like a live
// cluster's /openapi/v3 index.
var v3Docs = map[string]string{
	"api/v1": `{
  "openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.3"},
  "paths": {
    "/api/v1/namespaces/{namespace}/pods/{name}": {
      "get": {"operationId": "readCoreV1NamespacedPod", "tags": ["core_v1"], "description": "read the specified Pod",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Pod"}}}}},
        "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}
    },
    "/api/v1/watch/namespaces/{namespace}/pods": {
      "get": {"operationId": "watchCoreV1NamespacedPodList", "tags": ["core_v1"],
        "description": "watch individual changes to a list of Pod. deprecated: use the 'watch' parameter with a list operation instead.",
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "watchlist", "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}
    },
    "/api/v1/nodes/{name}/proxy": {
      "get": {"operationId": "connectCoreV1GetNodeProxy", "tags": ["core_v1"], "description": "connect GET requests to proxy of Node",
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "connect", "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "NodeProxyOptions"}}
    },
    "/api/v1/": {"get": {"operationId": "getCoreV1APIResources", "tags": ["core_v1"], "responses": {"200": {"description": "OK"}}}}
  },
  "components": {"schemas": {"io.k8s.api.core.v1.Pod": {"type": "object"}}}
}`,
	"version": `{
  "openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.3"},
  "paths": {"/version/": {"get": {"operationId": "getCodeVersion", "tags": ["version"], "responses": {"200": {"description": "OK"}}}}}
}`,
	"apis/example.com": `{
  "openapi": "3.0.0", "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
  "paths": {"/apis/example.com/": {"get": {"operationId": "getExampleComAPIGroup", "tags": ["exampleCom"], "responses": {"200": {"description": "OK"}}}}}
}`,
	"apis/example.com/v1beta1": `{
  "openapi": "3.0.0", "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
  "paths": {
    "/apis/example.com/v1beta1/namespaces/{namespace}/widgets/{name}/status": {
      "patch": {"operationId": "patchExampleComV1beta1NamespacedWidgetStatus", "tags": ["exampleCom_v1beta1"],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": {"group": "example.com", "version": "v1beta1", "kind": "Widget"}}
    }
  }
}`,
}

// TestFromDocuments expects from the v3 documents the catalog that
// catalog.FromOpenAPIV2 derives from the same operations in one swagger.json
// (whose own test checks every field), with and without embedded lists.
func TestFromDocuments(t *testing.T) {
	docs := map[string][]byte{}
	for name, doc := range v3Docs {
		docs[name] = []byte(doc)
	}
	for _, release := range []string{"v1.36.3", "1.99"} {
		t.Run(release, func(t *testing.T) {
			want, err := catalog.FromOpenAPIV2([]byte(swaggerDoc), release)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromDocuments(docs, release)
			if err != nil {
				t.Fatal(err)
			}
			if got.Release != want.Release {
				t.Errorf("Release = %q, want %q", got.Release, want.Release)
			}
			if !slices.Equal(got.Operations, want.Operations) {
				t.Errorf("operations from v3:\n  %+v\nfrom v2:\n  %+v", got.Operations, want.Operations)
			}
		})
	}
}

func TestFromDocumentsErrors(t *testing.T) {
	_, err := FromDocuments(map[string][]byte{"api/v1": []byte(`{"openapi": 3}`)}, "1.36")
	if err == nil || !strings.Contains(err.Error(), "api/v1") {
		t.Errorf("bad document: %v", err)
	}
}

// kubernetesSource returns the module cache directory a catalog was built
// from.
func kubernetesSource(t *testing.T, c *catalog.Catalog) string {
	t.Helper()
	dir, err := kubesource.ModuleDir(c.Source)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMatchesSwagger derives the catalog of one release from its
// published OpenAPI v3 documents and expects the same operations as from
// swagger.json.
func TestMatchesSwagger(t *testing.T) {
	want, err := catalog.Load("1.36")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(kubernetesSource(t, want), "api/openapi-spec/v3")
	files, err := filepath.Glob(filepath.Join(dir, "*_openapi.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no v3 documents in %s: %v", dir, err)
	}
	docs := map[string][]byte{}
	for _, file := range files {
		content, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// apis__apps__v1_openapi.json is /openapi/v3/apis/apps/v1.
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), "_openapi.json"), "__", "/")
		docs[name] = content
	}
	got, err := FromDocuments(docs, "v1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Operations) != len(want.Operations) {
		t.Errorf("%d operations from v3, %d from v2", len(got.Operations), len(want.Operations))
	}
	for _, w := range want.Operations {
		g, ok := got.Operation(w.ID)
		if !ok {
			t.Errorf("%s missing from v3", w.ID)
			continue
		}
		if g != w {
			t.Errorf("%s differs:\n  v3 %+v\n  v2 %+v", w.ID, g, w)
		}
	}
	// The body schemas agree too.
	gotSchemas, err := got.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	wantSchemas, err := want.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	if ids := slices.Sorted(maps.Keys(gotSchemas.Bodies)); !slices.Equal(ids, slices.Sorted(maps.Keys(wantSchemas.Bodies))) {
		t.Errorf("%d bodies from v3, %d from v2", len(ids), len(wantSchemas.Bodies))
	}
	if len(gotSchemas.Unresolved) != 0 {
		t.Errorf("unresolved references in v3: %v", gotSchemas.Unresolved)
	}
	sameSchemas(t, gotSchemas, wantSchemas, slices.Sorted(maps.Keys(wantSchemas.Bodies)))
}

// shape describes the type at a field path of an operation's body, enums
// left out: the published v3 documents carry none, the embedded schemas
// take them from the Go definitions.
func shape(s *catalog.Schemas, op, path string) string {
	typ, ok := s.FieldType(op, path)
	if !ok {
		return "missing"
	}
	return fmt.Sprintf("%s list=%s keys=%v strategy=%s mergeKey=%s preserve=%v",
		typ.Kind, typ.ListType, typ.ListMapKeys, typ.PatchStrategy, typ.PatchMergeKey, typ.PreserveUnknownFields)
}

// sameSchemas compares the body schemas of every operation of want with
// got's: the same field paths, each of the same shape.
func sameSchemas(t *testing.T, got, want *catalog.Schemas, ops []string) {
	t.Helper()
	for _, op := range ops {
		wantPaths, gotPaths := want.FieldPaths(op), got.FieldPaths(op)
		if !slices.Equal(gotPaths, wantPaths) {
			t.Errorf("%s: %d field paths, want %d", op, len(gotPaths), len(wantPaths))
			continue
		}
		for _, path := range wantPaths {
			if g, w := shape(got, op, path), shape(want, op, path); g != w {
				t.Errorf("%s %s: %s, want %s", op, path, g, w)
			}
		}
	}
}

// A custom resource's document as an API server serves it, reduced to what
// body schemas read.
const gadgetDoc = `{
  "openapi": "3.0.0", "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
  "paths": {
    "/apis/example.com/v1/namespaces/{namespace}/gadgets": {
      "post": {"operationId": "createExampleComV1NamespacedGadget", "x-kubernetes-action": "post",
        "requestBody": {"content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/com.example.v1.Gadget"}},
          "*/*": {"schema": {"$ref": "#/components/schemas/com.example.v1.Gadget"}}}},
        "responses": {"200": {"description": "OK"}}}
    },
    "/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}": {
      "patch": {"operationId": "patchExampleComV1NamespacedGadget", "x-kubernetes-action": "patch",
        "requestBody": {"content": {"application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}}},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/com.example.v1.Gadget"}}}}}},
      "get": {"operationId": "readExampleComV1NamespacedGadget", "x-kubernetes-action": "get", "responses": {"200": {"description": "OK"}}}
    }
  },
  "components": {"schemas": {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {"type": "object"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {"name": {"type": "string"},
      "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"}}},
    "com.example.v1.Gadget": {"type": "object", "properties": {
      "apiVersion": {"type": "string"},
      "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
      "spec": {"type": "object", "required": ["size"], "properties": {
        "size": {"type": "string", "enum": ["small", "large"]},
        "port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
        "parts": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
          "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "anything": {"type": "object", "additionalProperties": true},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}
  }}
}`

func TestFromDocumentsSchemas(t *testing.T) {
	c, err := FromDocuments(map[string][]byte{"apis/example.com/v1": []byte(gadgetDoc)}, "1.37")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	if ids := slices.Sorted(maps.Keys(s.Bodies)); !slices.Equal(ids, []string{"createExampleComV1NamespacedGadget", "patchExampleComV1NamespacedGadget"}) {
		t.Errorf("bodies of %v", ids)
	}
	if s.Bodies["patchExampleComV1NamespacedGadget"] != s.Bodies["createExampleComV1NamespacedGadget"] {
		t.Error("the patch does not apply to the Gadget")
	}
	const create = "createExampleComV1NamespacedGadget"
	if got := s.FieldPaths(create); !slices.Equal(got, []string{
		"apiVersion", "metadata", "metadata.finalizers", "metadata.finalizers[]", "metadata.name",
		"spec", "spec.anything", "spec.anything{}", "spec.extra", "spec.parts", "spec.parts[]", "spec.parts[].name", "spec.port", "spec.size",
	}) {
		t.Errorf("field paths %q", got)
	}
	for path, want := range map[string]string{
		"spec.size":           "string list= keys=[] strategy= mergeKey= preserve=false",
		"spec.port":           "int-or-string list= keys=[] strategy= mergeKey= preserve=false",
		"spec.parts":          "array list=map keys=[name] strategy= mergeKey= preserve=false",
		"spec.anything":       "map list= keys=[] strategy= mergeKey= preserve=false",
		"spec.extra":          "object list= keys=[] strategy= mergeKey= preserve=true",
		"metadata.finalizers": "array list=set keys=[] strategy=merge mergeKey= preserve=false",
	} {
		if got := shape(s, create, path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if size, _ := s.FieldType(create, "spec.size"); !slices.Equal(size.Enum, []string{"large", "small"}) {
		t.Errorf("spec.size enum %v", size.Enum)
	}
}
