package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// httpMethods are the path-item keys that hold operations, in the order
// operations of one path are read.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch"}

// v2Operation is the part of a Swagger 2.0 operation the catalog reads.
type v2Operation struct {
	OperationID string   `json:"operationId"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Deprecated  bool     `json:"deprecated"`
	Action      string   `json:"x-kubernetes-action"`
	GVK         *struct {
		Kind string `json:"kind"`
	} `json:"x-kubernetes-group-version-kind"`
}

// FromOpenAPIV2 derives a catalog from a Swagger 2.0 document: the
// swagger.json of kubernetes/kubernetes or a live cluster's /openapi/v2.
// release may be "1.36" or a version such as "v1.36.3"; when an embedded
// catalog exists for it, its conformance lists are applied (see
// ApplyConformanceLists), otherwise eligibility follows the rules alone.
func FromOpenAPIV2(doc []byte, release string) (*Catalog, error) {
	release = NormalizeRelease(release)
	c, err := fromOpenAPIV2(doc, release, embeddedLists(release))
	if err != nil {
		return nil, err
	}
	c.index()
	return c, nil
}

func fromOpenAPIV2(doc []byte, release string, lists ConformanceLists) (*Catalog, error) {
	var swagger struct {
		Swagger string                                `json:"swagger"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &swagger); err != nil {
		return nil, fmt.Errorf("parse openapi v2 document: %w", err)
	}
	if !strings.HasPrefix(swagger.Swagger, "2.") {
		return nil, fmt.Errorf("parse openapi v2 document: swagger version %q is not 2.x", swagger.Swagger)
	}
	var raws []RawOperation
	for _, path := range sortedKeys(swagger.Paths) {
		item := swagger.Paths[path]
		for _, method := range httpMethods {
			text, ok := item[method]
			if !ok {
				continue
			}
			var op v2Operation
			if err := json.Unmarshal(text, &op); err != nil {
				return nil, fmt.Errorf("parse operation %s %s: %w", method, path, err)
			}
			raw := RawOperation{
				ID: op.OperationID, Method: method, Path: path,
				Description: op.Description, Tags: op.Tags, Deprecated: op.Deprecated,
				Action: op.Action,
			}
			if op.GVK != nil {
				raw.Kind = op.GVK.Kind
			}
			raws = append(raws, raw)
		}
	}
	raws, err := checkOperationIDs(raws)
	if err != nil {
		return nil, err
	}
	return build(raws, release, lists), nil
}

// FromRawOperations derives a catalog from operations read from OpenAPI
// documents by a reader outside this package (see package openapiv3).
// release and the conformance lists work as in FromOpenAPIV2.
func FromRawOperations(raws []RawOperation, release string) (*Catalog, error) {
	release = NormalizeRelease(release)
	raws, err := checkOperationIDs(raws)
	if err != nil {
		return nil, err
	}
	c := build(raws, release, embeddedLists(release))
	c.index()
	return c, nil
}

// checkOperationIDs drops exact repeats (a path served in two v3 documents)
// and rejects operations without an ID or one ID used for two operations,
// since the ID is the key coverage is counted by.
func checkOperationIDs(raws []RawOperation) ([]RawOperation, error) {
	seen := make(map[string]RawOperation, len(raws))
	unique := raws[:0]
	for _, raw := range raws {
		if raw.ID == "" {
			return nil, fmt.Errorf("check operation %s %s: no operationId", strings.ToUpper(raw.Method), raw.Path)
		}
		if previous, ok := seen[raw.ID]; ok {
			if previous.Method == raw.Method && previous.Path == raw.Path {
				continue
			}
			return nil, fmt.Errorf("check operation %s: used by %s %s and %s %s", raw.ID,
				strings.ToUpper(previous.Method), previous.Path, strings.ToUpper(raw.Method), raw.Path)
		}
		seen[raw.ID] = raw
		unique = append(unique, raw)
	}
	return unique, nil
}

// embeddedLists returns the conformance lists of the embedded catalog of a
// release, or none when there is no such catalog (a newer cluster than this
// build knows).
func embeddedLists(release string) ConformanceLists {
	c, err := Load(release)
	if err != nil {
		return ConformanceLists{}
	}
	return c.Lists
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}
