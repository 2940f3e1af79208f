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
//
// The catalog carries the request-body schemas of its operations
// (Catalog.Schemas), custom resources' included, reduced as
// catalog.SchemasFromOpenAPIV2 reduces swagger.json's. Each document has its
// own components; a definition in several documents is taken from the
// first by path order (Kubernetes serves the same one everywhere).
func FromDocuments(docs map[string][]byte, release string) (*catalog.Catalog, error) {
	var raws []catalog.RawOperation
	defs := map[string]*catalog.RawSchema{}
	bodies := map[string]*catalog.RawSchema{}
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		loader := openapi3.NewLoader() // never follows external references
		doc, err := loader.LoadFromData(docs[name])
		if err != nil {
			return nil, fmt.Errorf("parse openapi v3 document %s: %w", name, err)
		}
		if doc.Components != nil {
			for _, def := range slices.Sorted(maps.Keys(doc.Components.Schemas)) {
				if _, ok := defs[def]; !ok && doc.Components.Schemas[def] != nil {
					defs[def] = rawSchema(doc.Components.Schemas[def].Value)
				}
			}
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
				if body := requestBody(op, method); body != nil && op.OperationID != "" {
					bodies[op.OperationID] = body
				}
			}
		}
	}
	c, err := catalog.FromRawOperations(raws, release)
	if err != nil {
		return nil, err
	}
	schemas, err := catalog.BuildSchemas(c.Release, "", defs, bodies)
	if err != nil {
		return nil, fmt.Errorf("build body schemas: %w", err)
	}
	c.SetSchemas(schemas)
	return c, nil
}

// patchType is the opaque type OpenAPI documents give every patch body.
const patchType = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"

// requestBody returns the schema of an operation's request body; for a
// patch, the type it patches (its 200 response).
func requestBody(op *openapi3.Operation, method string) *catalog.RawSchema {
	if op.RequestBody == nil || op.RequestBody.Value == nil {
		return nil
	}
	body := contentSchema(op.RequestBody.Value.Content)
	if body == nil {
		return &catalog.RawSchema{}
	}
	if method == "patch" && body.Ref == patchType && op.Responses != nil {
		if response := op.Responses.Status(200); response != nil && response.Value != nil {
			if target := contentSchema(response.Value.Content); target != nil {
				return target
			}
		}
	}
	return body
}

// contentSchema picks the JSON schema of a content map: application/json,
// */*, or the first media type by name.
func contentSchema(content openapi3.Content) *catalog.RawSchema {
	for _, mediaType := range append([]string{"application/json", "*/*"}, slices.Sorted(maps.Keys(content))...) {
		if media := content[mediaType]; media != nil && media.Schema != nil {
			return rawSchemaRef(media.Schema)
		}
	}
	return nil
}

// rawSchemaRef converts a kin-openapi schema or reference. References are
// kept by name, never followed, so recursive definitions stay finite.
func rawSchemaRef(ref *openapi3.SchemaRef) *catalog.RawSchema {
	if ref == nil {
		return nil
	}
	if ref.Ref != "" {
		raw := &catalog.RawSchema{Ref: catalog.RefName(ref.Ref)}
		// A $ref with sibling extensions, as Swagger 2.0 writes fields.
		extensions(raw, ref.Extensions)
		return raw
	}
	return rawSchema(ref.Value)
}

func rawSchema(s *openapi3.Schema) *catalog.RawSchema {
	if s == nil {
		return nil
	}
	raw := &catalog.RawSchema{Format: s.Format, Enum: s.Enum, Items: rawSchemaRef(s.Items)}
	if s.Type != nil {
		types := slices.DeleteFunc(s.Type.Slice(), func(t string) bool { return t == "null" })
		if len(types) == 1 {
			raw.Type = types[0]
		}
	}
	if len(s.Properties) > 0 {
		raw.Properties = make(map[string]*catalog.RawSchema, len(s.Properties))
		for name, prop := range s.Properties {
			raw.Properties[name] = rawSchemaRef(prop)
		}
	}
	if s.AdditionalProperties.Schema != nil {
		raw.AdditionalProperties = rawSchemaRef(s.AdditionalProperties.Schema)
	} else if s.AdditionalProperties.Has != nil {
		raw.AdditionalPropertiesAllowed = *s.AdditionalProperties.Has
	}
	for _, list := range []struct {
		from openapi3.SchemaRefs
		to   *[]*catalog.RawSchema
	}{{s.AllOf, &raw.AllOf}, {s.AnyOf, &raw.AnyOf}, {s.OneOf, &raw.OneOf}} {
		for _, ref := range list.from {
			*list.to = append(*list.to, rawSchemaRef(ref))
		}
	}
	extensions(raw, s.Extensions)
	return raw
}

// extensions reads the x-kubernetes-* extensions body schemas keep, which
// kin-openapi leaves as decoded JSON.
func extensions(raw *catalog.RawSchema, ext map[string]any) {
	if len(ext) == 0 {
		return
	}
	raw.PreserveUnknownFields, _ = ext["x-kubernetes-preserve-unknown-fields"].(bool)
	raw.IntOrString, _ = ext["x-kubernetes-int-or-string"].(bool)
	raw.ListType = stringExtension(ext, "x-kubernetes-list-type")
	raw.PatchStrategy = stringExtension(ext, "x-kubernetes-patch-strategy")
	raw.PatchMergeKey = stringExtension(ext, "x-kubernetes-patch-merge-key")
	if keys, ok := ext["x-kubernetes-list-map-keys"].([]any); ok {
		for _, key := range keys {
			if name, ok := key.(string); ok {
				raw.ListMapKeys = append(raw.ListMapKeys, name)
			}
		}
	}
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
