package catalog

import (
	"encoding/json"
	"fmt"
	"strings"
)

// v2Parameter is a Swagger 2.0 parameter or a reference to one.
type v2Parameter struct {
	Ref    string     `json:"$ref"`
	In     string     `json:"in"`
	Schema *RawSchema `json:"schema"`
}

// v2BodyOperation is the part of a Swagger 2.0 operation body schemas need.
type v2BodyOperation struct {
	OperationID string        `json:"operationId"`
	Parameters  []v2Parameter `json:"parameters"`
	Responses   map[string]struct {
		Schema *RawSchema `json:"schema"`
	} `json:"responses"`
}

// SchemasFromOpenAPIV2 extracts the request-body schema of every operation
// of a Swagger 2.0 document (swagger.json, a cluster's /openapi/v2) that
// takes one. enums, which may be nil, adds enum values the document lacks.
// release and source are recorded in the Schemas.
func SchemasFromOpenAPIV2(doc []byte, release, source string, enums Enums) (*Schemas, error) {
	var swagger struct {
		Swagger     string                                `json:"swagger"`
		Paths       map[string]map[string]json.RawMessage `json:"paths"`
		Parameters  map[string]v2Parameter                `json:"parameters"`
		Definitions map[string]*RawSchema                 `json:"definitions"`
	}
	if err := json.Unmarshal(doc, &swagger); err != nil {
		return nil, fmt.Errorf("parse openapi v2 document: %w", err)
	}
	if !strings.HasPrefix(swagger.Swagger, "2.") {
		return nil, fmt.Errorf("parse openapi v2 document: swagger version %q is not 2.x", swagger.Swagger)
	}
	enums.apply(swagger.Definitions)
	bodies := map[string]*RawSchema{}
	for _, path := range sortedKeys(swagger.Paths) {
		item := swagger.Paths[path]
		var common []v2Parameter
		if text, ok := item["parameters"]; ok {
			if err := json.Unmarshal(text, &common); err != nil {
				return nil, fmt.Errorf("parse parameters of %s: %w", path, err)
			}
		}
		for _, method := range httpMethods {
			text, ok := item[method]
			if !ok {
				continue
			}
			var op v2BodyOperation
			if err := json.Unmarshal(text, &op); err != nil {
				return nil, fmt.Errorf("parse operation %s %s: %w", method, path, err)
			}
			body := v2Body(append(common, op.Parameters...), swagger.Parameters)
			if body == nil || op.OperationID == "" {
				continue
			}
			if method == "patch" {
				body = patchTarget(body, op.Responses["200"].Schema)
			}
			bodies[op.OperationID] = body
		}
	}
	return BuildSchemas(NormalizeRelease(release), source, swagger.Definitions, bodies)
}

// v2Body returns the schema of the body parameter, resolving references to
// the document's shared parameters.
func v2Body(params []v2Parameter, shared map[string]v2Parameter) *RawSchema {
	for _, p := range params {
		if p.Ref != "" {
			p = shared[RefName(p.Ref)]
		}
		if p.In == "body" {
			if p.Schema == nil {
				return &RawSchema{}
			}
			return p.Schema
		}
	}
	return nil
}

// patchTarget returns the schema a patch body applies to: the operation's
// 200 response when the body is the opaque Patch type.
func patchTarget(body, response *RawSchema) *RawSchema {
	if response != nil && body.Ref == "io.k8s.apimachinery.pkg.apis.meta.v1.Patch" {
		return response
	}
	return body
}
