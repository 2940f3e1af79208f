package openapiv3

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// A trimmed-down swagger.json in the shape the API server serves: core
// pods, a legacy watch, a node proxy (listed ineligible in 1.36), discovery,
// a non-resource URL, and a CRD-like group serving only example.com/v1beta1.
const swaggerDoc = `{
  "swagger": "2.0",
  "info": {"title": "Kubernetes", "version": "v1.36.3"},
  "paths": {
    "/api/v1/namespaces/{namespace}/pods/{name}": {
      "get": {"operationId": "readCoreV1NamespacedPod", "tags": ["core_v1"], "description": "read the specified Pod",
        "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}},
      "parameters": [{"name": "name", "in": "path", "required": true, "type": "string"}]
    },
    "/api/v1/watch/namespaces/{namespace}/pods": {
      "get": {"operationId": "watchCoreV1NamespacedPodList", "tags": ["core_v1"],
        "description": "watch individual changes to a list of Pod. deprecated: use the 'watch' parameter with a list operation instead.",
        "x-kubernetes-action": "watchlist", "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}
    },
    "/api/v1/nodes/{name}/proxy": {
      "get": {"operationId": "connectCoreV1GetNodeProxy", "tags": ["core_v1"], "description": "connect GET requests to proxy of Node",
        "x-kubernetes-action": "connect", "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "NodeProxyOptions"}}
    },
    "/api/v1/": {"get": {"operationId": "getCoreV1APIResources", "tags": ["core_v1"]}},
    "/version/": {"get": {"operationId": "getCodeVersion", "tags": ["version"]}},
    "/apis/example.com/": {"get": {"operationId": "getExampleComAPIGroup", "tags": ["exampleCom"]}},
    "/apis/example.com/v1beta1/namespaces/{namespace}/widgets/{name}/status": {
      "patch": {"operationId": "patchExampleComV1beta1NamespacedWidgetStatus", "tags": ["exampleCom_v1beta1"],
        "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": {"group": "example.com", "version": "v1beta1", "kind": "Widget"}}
    }
  },
  "definitions": {"io.k8s.api.core.v1.Pod": {"type": "object"}}
}`

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
// from, skipping the test when it is not there (go generate downloads it).
func kubernetesSource(t *testing.T, c *catalog.Catalog) string {
	t.Helper()
	if testing.Short() {
		t.Skip("reads the k8s.io/kubernetes module from the module cache")
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	// k8s.io/kubernetes needs no case-escaping in module cache paths.
	dir := filepath.Join(strings.TrimSpace(string(modcache)), c.Source)
	if _, err := os.Stat(filepath.Join(dir, catalog.SwaggerFile)); err != nil {
		t.Skipf("%s not in the module cache; run go generate to download it", c.Source)
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
}
