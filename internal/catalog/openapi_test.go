package catalog

import (
	"os"
	"strings"
	"testing"
)

// A trimmed-down swagger.json in the shape the API server serves: core
// pods, a legacy watch, a node proxy (listed ineligible in 1.36), discovery,
// a non-resource URL, and a CRD-like group serving only example.com/v1beta1.
var swaggerDoc = readTestdata("testdata/mini-swagger.json")

// readTestdata reads a fixture shared by the catalog packages' tests.
func readTestdata(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return string(data)
}

func TestFromOpenAPI(t *testing.T) {
	fromV2 := func(release string) (*Catalog, error) { return FromOpenAPIV2([]byte(swaggerDoc), release) }
	fromRaw := func(release string) (*Catalog, error) { return FromRawOperations(rawOperations(), release) }
	want := []Operation{
		{ID: "connectCoreV1GetNodeProxy", Method: "GET", Path: "/api/v1/nodes/{name}/proxy", Version: "v1",
			Resource: "nodes", Subresource: "proxy", Action: "connect", Kind: "NodeProxyOptions", Class: ClassResource,
			Level: Stable, Eligibility: Ineligible, IneligibleReason: "Unable to be tested, and likely soon deprecated", Category: "core"},
		{ID: "getCodeVersion", Method: "GET", Path: "/version/", Class: ClassNonResource, Level: Stable,
			Eligibility: Eligible, Category: "version"},
		{ID: "getCoreV1APIResources", Method: "GET", Path: "/api/v1/", Version: "v1", Class: ClassDiscovery,
			Level: Stable, Eligibility: Eligible, Category: "core"},
		{ID: "getExampleComAPIGroup", Method: "GET", Path: "/apis/example.com/", Group: "example.com",
			Class: ClassDiscovery, Level: Beta, Eligibility: Ineligible, IneligibleReason: "beta API", Category: "exampleCom"},
		{ID: "patchExampleComV1beta1NamespacedWidgetStatus", Method: "PATCH",
			Path:  "/apis/example.com/v1beta1/namespaces/{namespace}/widgets/{name}/status",
			Group: "example.com", Version: "v1beta1", Resource: "widgets", Subresource: "status", Action: "patch",
			Kind: "Widget", Class: ClassResource, Level: Beta, Namespaced: true, Eligibility: Ineligible,
			IneligibleReason: "beta API", Category: "exampleCom"},
		{ID: "readCoreV1NamespacedPod", Method: "GET", Path: "/api/v1/namespaces/{namespace}/pods/{name}",
			Version: "v1", Resource: "pods", Action: "get", Kind: "Pod", Class: ClassResource, Level: Stable,
			Namespaced: true, Eligibility: Eligible, Category: "core"},
		{ID: "watchCoreV1NamespacedPodList", Method: "GET", Path: "/api/v1/watch/namespaces/{namespace}/pods",
			Version: "v1", Resource: "pods", Action: "watchlist", Kind: "Pod", Class: ClassResource, Level: Stable,
			Deprecated: true, Watch: true, Namespaced: true, Eligibility: Ineligible, IneligibleReason: "deprecated", Category: "core"},
	}
	for name, from := range map[string]func(string) (*Catalog, error){"v2": fromV2, "raw": fromRaw} {
		t.Run(name, func(t *testing.T) {
			// A 1.36 cluster: the embedded 1.36 lists apply (connectCoreV1GetNodeProxy).
			c, err := from("v1.36.3")
			if err != nil {
				t.Fatal(err)
			}
			if c.Release != "1.36" {
				t.Errorf("Release = %q", c.Release)
			}
			if len(c.Operations) != len(want) {
				t.Errorf("%d operations, want %d", len(c.Operations), len(want))
			}
			for i := range min(len(want), len(c.Operations)) {
				if c.Operations[i] != want[i] {
					t.Errorf("operation %d =\n  %+v\nwant\n  %+v", i, c.Operations[i], want[i])
				}
			}
			// A release without embedded lists: rules only.
			unknown, err := from("1.99")
			if err != nil {
				t.Fatal(err)
			}
			if op, _ := unknown.Operation("connectCoreV1GetNodeProxy"); op.Eligibility != Eligible {
				t.Errorf("1.99 connectCoreV1GetNodeProxy: %s, want eligible without lists", op.Eligibility)
			}
		})
	}
}

func TestFromOpenAPIErrors(t *testing.T) {
	tests := map[string]string{
		"not json":     `{`,
		"openapi v3":   `{"openapi": "3.0.0", "paths": {}}`,
		"no id":        `{"swagger": "2.0", "paths": {"/api/v1/pods": {"get": {}}}}`,
		"duplicate id": `{"swagger": "2.0", "paths": {"/a/": {"get": {"operationId": "x"}}, "/b/": {"get": {"operationId": "x"}}}}`,
	}
	for name, doc := range tests {
		if _, err := FromOpenAPIV2([]byte(doc), "1.36"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := FromRawOperations([]RawOperation{{Method: "get", Path: "/api/v1/pods"}}, "1.36"); err == nil || !strings.Contains(err.Error(), "/api/v1/pods") {
		t.Errorf("FromRawOperations without an operationId: %v", err)
	}
}

// rawOperations are swaggerDoc's operations as another document reader
// (package openapiv3) hands them to FromRawOperations, with an exact repeat
// (a path served in two documents) that must be dropped.
func rawOperations() []RawOperation {
	pod := RawOperation{ID: "readCoreV1NamespacedPod", Method: "get", Path: "/api/v1/namespaces/{namespace}/pods/{name}",
		Description: "read the specified Pod", Tags: []string{"core_v1"}, Action: "get", Kind: "Pod"}
	return []RawOperation{
		pod,
		{ID: "watchCoreV1NamespacedPodList", Method: "get", Path: "/api/v1/watch/namespaces/{namespace}/pods", Tags: []string{"core_v1"},
			Description: "watch individual changes to a list of Pod. deprecated: use the 'watch' parameter with a list operation instead.",
			Action:      "watchlist", Kind: "Pod"},
		{ID: "connectCoreV1GetNodeProxy", Method: "get", Path: "/api/v1/nodes/{name}/proxy", Tags: []string{"core_v1"},
			Description: "connect GET requests to proxy of Node", Action: "connect", Kind: "NodeProxyOptions"},
		{ID: "getCoreV1APIResources", Method: "get", Path: "/api/v1/", Tags: []string{"core_v1"}},
		{ID: "getCodeVersion", Method: "get", Path: "/version/", Tags: []string{"version"}},
		{ID: "getExampleComAPIGroup", Method: "get", Path: "/apis/example.com/", Tags: []string{"exampleCom"}},
		{ID: "patchExampleComV1beta1NamespacedWidgetStatus", Method: "patch",
			Path: "/apis/example.com/v1beta1/namespaces/{namespace}/widgets/{name}/status", Tags: []string{"exampleCom_v1beta1"},
			Action: "patch", Kind: "Widget"},
		pod,
	}
}
