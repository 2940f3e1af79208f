package catalog

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// RawSchema is an OpenAPI schema (a Swagger 2.0 definition or an OpenAPI
// v3 component) reduced to what body schemas keep. Readers of documents
// fill it (SchemasFromOpenAPIV2 from JSON, package openapiv3 from
// kin-openapi) so that the reduction to Types exists once.
type RawSchema struct {
	// Ref is the definition name a $ref points to, without its
	// "#/definitions/" or "#/components/schemas/" prefix.
	Ref                  string
	Type                 string
	Format               string
	Properties           map[string]*RawSchema
	AdditionalProperties *RawSchema
	// AdditionalPropertiesAllowed is additionalProperties: true.
	AdditionalPropertiesAllowed bool
	Items                       *RawSchema
	Enum                        []any
	AllOf, AnyOf, OneOf         []*RawSchema

	PreserveUnknownFields bool     // x-kubernetes-preserve-unknown-fields
	IntOrString           bool     // x-kubernetes-int-or-string
	ListType              string   // x-kubernetes-list-type
	ListMapKeys           []string // x-kubernetes-list-map-keys
	PatchStrategy         string   // x-kubernetes-patch-strategy
	PatchMergeKey         string   // x-kubernetes-patch-merge-key
}

// UnmarshalJSON reads a schema as written in a Swagger 2.0 or OpenAPI v3
// JSON document.
func (r *RawSchema) UnmarshalJSON(data []byte) error {
	var w struct {
		Ref                   string                `json:"$ref"`
		Type                  json.RawMessage       `json:"type"`
		Format                string                `json:"format"`
		Properties            map[string]*RawSchema `json:"properties"`
		AdditionalProperties  json.RawMessage       `json:"additionalProperties"`
		Items                 json.RawMessage       `json:"items"`
		Enum                  []any                 `json:"enum"`
		AllOf                 []*RawSchema          `json:"allOf"`
		AnyOf                 []*RawSchema          `json:"anyOf"`
		OneOf                 []*RawSchema          `json:"oneOf"`
		PreserveUnknownFields bool                  `json:"x-kubernetes-preserve-unknown-fields"`
		IntOrString           bool                  `json:"x-kubernetes-int-or-string"`
		ListType              string                `json:"x-kubernetes-list-type"`
		ListMapKeys           []string              `json:"x-kubernetes-list-map-keys"`
		PatchStrategy         string                `json:"x-kubernetes-patch-strategy"`
		PatchMergeKey         string                `json:"x-kubernetes-patch-merge-key"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*r = RawSchema{
		Ref: RefName(w.Ref), Format: w.Format, Properties: w.Properties, Enum: w.Enum,
		AllOf: w.AllOf, AnyOf: w.AnyOf, OneOf: w.OneOf,
		PreserveUnknownFields: w.PreserveUnknownFields, IntOrString: w.IntOrString,
		ListType: w.ListType, ListMapKeys: w.ListMapKeys, PatchStrategy: w.PatchStrategy, PatchMergeKey: w.PatchMergeKey,
	}
	if len(w.Type) > 0 {
		// OpenAPI 3.1 allows a list of types; Kubernetes writes one string.
		var types []string
		if err := json.Unmarshal(w.Type, &r.Type); err != nil {
			if json.Unmarshal(w.Type, &types) != nil {
				return fmt.Errorf("schema type %s: %w", w.Type, err)
			}
			r.Type = singleType(types)
		}
	}
	if len(w.AdditionalProperties) > 0 {
		var allowed bool
		if json.Unmarshal(w.AdditionalProperties, &allowed) == nil {
			r.AdditionalPropertiesAllowed = allowed
		} else if err := json.Unmarshal(w.AdditionalProperties, &r.AdditionalProperties); err != nil {
			return err
		}
	}
	// Swagger 2.0 allows a list of item schemas (a tuple); Kubernetes never
	// writes one, and a tuple is left as items of any type.
	if len(w.Items) > 0 && w.Items[0] == '{' {
		if err := json.Unmarshal(w.Items, &r.Items); err != nil {
			return err
		}
	}
	return nil
}

// singleType reduces an OpenAPI 3.1 list of types to one, ignoring "null";
// a real union is left untyped (any).
func singleType(types []string) string {
	types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "null" })
	if len(types) == 1 {
		return types[0]
	}
	return ""
}

// RefName strips a local reference to its definition name:
// "#/definitions/io.k8s.api.core.v1.Pod" and
// "#/components/schemas/io.k8s.api.core.v1.Pod" become
// "io.k8s.api.core.v1.Pod".
func RefName(ref string) string {
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// freeForm are definitions typed "object" without properties that hold
// arbitrary JSON. Every other object without properties is an empty struct
// (StorageVersionSpec, CustomResourceSubresourceStatus), whose keys are all
// unknown.
var freeForm = map[string]bool{
	"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": true,
	"io.k8s.apimachinery.pkg.runtime.RawExtension":  true,
	"io.k8s.apimachinery.pkg.apis.meta.v1.Patch":    true,
}

// quantity is the definition of resource.Quantity, written as a string in
// Swagger 2.0 though it also accepts numbers (OpenAPI v3 says oneOf string
// and number).
const quantity = "io.k8s.apimachinery.pkg.api.resource.Quantity"

// BuildSchemas reduces the body schemas of operations (operationId ->
// schema, usually a reference) and the definitions they refer to into a
// table of types. Only types reachable from a body are kept. A reference
// to a missing definition stands for the any type and is listed in
// Schemas.Unresolved: one broken document of a live cluster must not cost
// the others their schemas.
func BuildSchemas(release, source string, definitions map[string]*RawSchema, bodies map[string]*RawSchema) (*Schemas, error) {
	b := &schemaBuilder{
		defs:       definitions,
		named:      map[string]int32{},
		anon:       map[string]int32{},
		unresolved: map[string]bool{},
	}
	b.intern(Type{Kind: KindAny}) // index 0
	s := &Schemas{Release: release, Source: source, Bodies: make(map[string]int32, len(bodies))}
	ids := make([]string, 0, len(bodies))
	for id := range bodies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.Bodies[id] = b.schema(bodies[id])
		if b.err != nil {
			return nil, fmt.Errorf("build body schema of %s: %w", id, b.err)
		}
	}
	s.Types = b.types
	s.Unresolved = sortedKeys(b.unresolved)
	if err := s.init(); err != nil {
		return nil, err
	}
	return s, nil
}

type schemaBuilder struct {
	defs  map[string]*RawSchema
	types []Type
	named map[string]int32 // definition name -> index
	anon  map[string]int32 // canonical JSON of an inline type -> index
	// unresolved are the definitions referred to but missing.
	unresolved map[string]bool
	err        error
}

// intern returns the index of an inline type, adding it unless an equal one
// is already in the table.
func (b *schemaBuilder) intern(t Type) int32 {
	key, err := json.Marshal(t)
	if err != nil {
		b.err = err
		return 0
	}
	if i, ok := b.anon[string(key)]; ok {
		return i
	}
	i := int32(len(b.types))
	b.types = append(b.types, t)
	b.anon[string(key)] = i
	return i
}

// ref returns the index of a named definition, building it on first use.
// The index is reserved before the definition's fields are built, so a
// recursive definition refers to itself.
func (b *schemaBuilder) ref(name string) int32 {
	if i, ok := b.named[name]; ok {
		return i
	}
	def, ok := b.defs[name]
	if !ok || def == nil {
		b.unresolved[name] = true
		return 0
	}
	i := int32(len(b.types))
	b.types = append(b.types, Type{Name: name})
	b.named[name] = i
	t := b.build(def, name)
	t.Name = name
	b.types[i] = t
	return i
}

// schema returns the index of the type of s: a named definition, a named
// definition wrapped with field-level extensions (a $ref with siblings in
// Swagger 2.0, allOf of one $ref in OpenAPI v3), or an inline type.
func (b *schemaBuilder) schema(s *RawSchema) int32 {
	if s == nil {
		return 0
	}
	var base int32 = -1
	switch {
	case s.Ref != "":
		base = b.ref(s.Ref)
	case len(s.AllOf) == 1 && s.Type == "" && len(s.Properties) == 0:
		base = b.schema(s.AllOf[0])
	}
	if base < 0 {
		return b.intern(b.build(s, ""))
	}
	t := b.types[base]
	if !fieldExtensions(s, &t) {
		return base
	}
	t.index = nil
	return b.intern(t)
}

// fieldExtensions copies the extensions s declares onto t, reporting
// whether any changed it.
func fieldExtensions(s *RawSchema, t *Type) bool {
	changed := false
	set := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst, changed = v, true
		}
	}
	set(&t.PatchStrategy, s.PatchStrategy)
	set(&t.PatchMergeKey, s.PatchMergeKey)
	set(&t.ListType, s.ListType)
	if len(s.ListMapKeys) > 0 && !slices.Equal(t.ListMapKeys, s.ListMapKeys) {
		t.ListMapKeys, changed = s.ListMapKeys, true
	}
	if s.PreserveUnknownFields && !t.PreserveUnknownFields && t.Kind == KindObject {
		t.PreserveUnknownFields, changed = true, true
	}
	return changed
}

// build reduces one schema (not a reference) to a Type. name is the
// definition's name, empty for inline schemas.
func (b *schemaBuilder) build(s *RawSchema, name string) Type {
	t := Type{
		ListType: s.ListType, ListMapKeys: s.ListMapKeys,
		PatchStrategy: s.PatchStrategy, PatchMergeKey: s.PatchMergeKey,
	}
	switch {
	case name == quantity:
		t.Kind = KindQuantity
	case freeForm[name]:
		t.Kind = KindAny
	case s.IntOrString || s.Format == "int-or-string":
		t.Kind = KindIntOrString
	case s.Type == "" && len(s.Properties) == 0 && len(s.AllOf) == 1:
		// allOf of one schema with field-level additions only.
		inner := b.types[b.schema(s.AllOf[0])]
		inner.Name, inner.index = "", nil
		fieldExtensions(s, &inner)
		return inner
	case s.Type == "" && (len(s.OneOf) > 0 || len(s.AnyOf) > 0):
		t.Kind = unionKind(append(slices.Clone(s.OneOf), s.AnyOf...))
	case s.Type == "object" || (s.Type == "" && (len(s.Properties) > 0 || s.AdditionalProperties != nil)):
		switch {
		case len(s.Properties) > 0:
			t.Kind = KindObject
			t.Properties = make([]Property, 0, len(s.Properties))
			for _, prop := range sortedKeys(s.Properties) {
				t.Properties = append(t.Properties, Property{Name: prop, Type: b.schema(s.Properties[prop])})
			}
			// Properties and additionalProperties together (never in
			// Kubernetes' own types): the additional keys are let through.
			t.PreserveUnknownFields = s.PreserveUnknownFields || s.AdditionalProperties != nil || s.AdditionalPropertiesAllowed
		case s.AdditionalProperties != nil:
			t.Kind, t.Elem = KindMap, b.schema(s.AdditionalProperties)
		case s.AdditionalPropertiesAllowed:
			t.Kind = KindMap
		default:
			// An object declaring no field: an empty struct, or a custom
			// resource's object that keeps whatever it is given.
			t.Kind, t.PreserveUnknownFields = KindObject, s.PreserveUnknownFields
		}
	case s.Type == "array" || (s.Type == "" && s.Items != nil):
		t.Kind, t.Elem = KindArray, b.schema(s.Items)
	default:
		t.Kind = scalarKinds[s.Type] // KindAny for no type or an unknown one
	}
	if t.Kind == KindString {
		t.Enum = stringEnum(s.Enum)
	}
	if t.Kind != KindObject {
		t.PreserveUnknownFields = false
	}
	return t
}

var scalarKinds = map[string]Kind{"string": KindString, "integer": KindInteger, "number": KindNumber, "boolean": KindBoolean}

// unionKind is the kind of a oneOf/anyOf of plain types: integer or string
// is IntOrString, number (or integer and number) or string is Quantity,
// anything else is left free.
func unionKind(branches []*RawSchema) Kind {
	types := map[string]bool{}
	for _, branch := range branches {
		if branch == nil || branch.Ref != "" || branch.Type == "" {
			return KindAny
		}
		types[branch.Type] = true
	}
	switch {
	case len(types) == 2 && types["integer"] && types["string"]:
		return KindIntOrString
	case types["string"] && types["number"] && (len(types) == 2 || len(types) == 3 && types["integer"]):
		return KindQuantity
	case len(types) == 1:
		for name := range types {
			return scalarKinds[name]
		}
	}
	return KindAny
}

// stringEnum keeps an enum made of strings only, sorted; any other value
// drops the whole enum, so no value is ever wrongly reported.
func stringEnum(values []any) []string {
	if len(values) == 0 {
		return nil
	}
	out := make([]string, 0, len(values))
	for _, v := range values {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Enums are enum values to add to definitions whose document lacks them
// (Kubernetes' published swagger.json carries none): definition name ->
// field -> values. A field is a property name, optionally followed by "[]"
// for its list items or "{}" for its map values ("imagePullPolicy",
// "accessModes[]").
type Enums map[string]map[string][]string

// apply sets the enums on the definitions, leaving any enum a schema
// already has, and returns how many it set. Enums of definitions the
// document does not have (types no API serves) are ignored.
func (e Enums) apply(defs map[string]*RawSchema) (applied int) {
	for def, fields := range e {
		for field, values := range fields {
			target := enumTarget(defs[def], field)
			if target == nil || len(target.Enum) > 0 {
				continue
			}
			target.Enum = make([]any, len(values))
			for i, v := range values {
				target.Enum[i] = v
			}
			applied++
		}
	}
	return applied
}

func enumTarget(def *RawSchema, field string) *RawSchema {
	if def == nil {
		return nil
	}
	name := strings.TrimRight(field, "[]{}")
	s := def.Properties[name]
	for rest := field[len(name):]; s != nil && rest != ""; rest = rest[2:] {
		switch {
		case strings.HasPrefix(rest, "[]"):
			s = s.Items
		case strings.HasPrefix(rest, "{}"):
			s = s.AdditionalProperties
		default:
			return nil
		}
	}
	if s == nil || s.Ref != "" {
		return nil
	}
	return s
}
