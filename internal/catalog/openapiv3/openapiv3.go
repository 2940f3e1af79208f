// Package openapiv3 derives a catalog from a live cluster's OpenAPI v3
// documents, which also cover custom resources and aggregated APIs. It is
// apart from package catalog because it parses the documents with
// kin-openapi, which the recording sidecar (it matches against embedded or
// operator-written catalogs only) must not link: what a binary links is
// resident memory in every recorded pod.
package openapiv3

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// methods are the HTTP methods whose operations are read, in the order
// operations of one path are read (as catalog.FromOpenAPIV2 reads them).
var methods = []string{"get", "put", "post", "delete", "options", "head", "patch"}

// FromDocuments derives a catalog from OpenAPI v3 documents, as served by a
// live cluster under /openapi/v3/<path>, keyed by that path ("api/v1",
// "apis/apps/v1", "apis/example.com/v1beta1", "version"). Custom resources
// and aggregated APIs follow the same rules as built-in APIs: Level from
// their version, eligible when stable, not deprecated and not listed.
// release and the conformance lists work as in catalog.FromOpenAPIV2.
func FromDocuments(docs map[string][]byte, release string) (*catalog.Catalog, error) {
	var raws []catalog.RawOperation
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		loader := openapi3.NewLoader() // never follows external references
		doc, err := loader.LoadFromData(docs[name])
		if err != nil {
			return nil, fmt.Errorf("parse openapi v3 document %s: %w", name, err)
		}
		if doc.Paths == nil {
			continue
		}
		items := doc.Paths.Map()
		for _, path := range slices.Sorted(maps.Keys(items)) {
			for _, method := range methods {
				op := items[path].GetOperation(strings.ToUpper(method))
				if op == nil {
					continue
				}
				raws = append(raws, catalog.RawOperation{
					ID: op.OperationID, Method: method, Path: path,
					Description: op.Description, Tags: op.Tags, Deprecated: op.Deprecated,
					Action: stringExtension(op.Extensions, "x-kubernetes-action"),
					Kind:   gvkKind(op.Extensions["x-kubernetes-group-version-kind"]),
				})
			}
		}
	}
	return catalog.FromRawOperations(raws, release)
}

func stringExtension(extensions map[string]any, name string) string {
	value, _ := extensions[name].(string)
	return value
}

// gvkKind reads the kind of an x-kubernetes-group-version-kind extension,
// which kin-openapi leaves as decoded JSON.
func gvkKind(value any) string {
	if object, ok := value.(map[string]any); ok {
		kind, _ := object["kind"].(string)
		return kind
	}
	return ""
}
