package catalog

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"apisnoop.dev/kube-apisnoop/internal/zjson"
)

// Kind is what JSON a schema type accepts.
type Kind uint8

const (
	// KindAny accepts any JSON value and says nothing about what is inside
	// it (RawExtension, FieldsV1, apiextensions JSON, a schema without type).
	KindAny Kind = iota
	// KindObject is an object with named properties (a Go struct).
	KindObject
	// KindArray is a list of Elem.
	KindArray
	// KindMap is an object whose values are Elem, keyed by any string.
	KindMap
	KindString
	KindInteger
	KindNumber
	KindBoolean
	// KindIntOrString accepts an integer or a string (intstr.IntOrString,
	// x-kubernetes-int-or-string).
	KindIntOrString
	// KindQuantity accepts a string or a number (resource.Quantity).
	KindQuantity
)

var kindNames = [...]string{"any", "object", "array", "map", "string", "integer", "number", "boolean", "int-or-string", "quantity"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	if int(k) >= len(kindNames) {
		return nil, fmt.Errorf("unknown schema kind %d", k)
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText reads what MarshalText writes.
func (k *Kind) UnmarshalText(text []byte) error {
	for i, name := range kindNames {
		if name == string(text) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown schema kind %q", text)
}

// Type is one entry of a Schemas table. Types refer to each other by index
// into Schemas.Types, so recursive definitions (JSONSchemaProps) are finite.
type Type struct {
	// Name is the OpenAPI definition name for named types
	// (io.k8s.api.apps.v1.Deployment); empty for inline schemas.
	Name string `json:"name,omitempty"`
	Kind Kind   `json:"kind"`
	// Properties of an object, sorted by name.
	Properties []Property `json:"properties,omitempty"`
	// Elem is the type of an array's items or a map's values (0, the any
	// type, when the document does not say).
	Elem int32 `json:"elem,omitempty"`
	// Enum lists the allowed values of a string type. Enums of other JSON
	// types (possible in custom resources) are not kept.
	Enum []string `json:"enum,omitempty"`
	// ListType and ListMapKeys are x-kubernetes-list-type (atomic, set,
	// map) and x-kubernetes-list-map-keys, which server-side apply merges
	// lists by.
	ListType    string   `json:"listType,omitempty"`
	ListMapKeys []string `json:"listMapKeys,omitempty"`
	// PatchStrategy and PatchMergeKey are x-kubernetes-patch-strategy
	// ("merge", "retainKeys", "merge,retainKeys", "replace") and
	// x-kubernetes-patch-merge-key, which strategic merge patches follow.
	// They belong to a field, so a field declaring them on a named type gets
	// its own copy of that type carrying them.
	PatchStrategy string `json:"patchStrategy,omitempty"`
	PatchMergeKey string `json:"patchMergeKey,omitempty"`
	// PreserveUnknownFields (x-kubernetes-preserve-unknown-fields) lets an
	// object hold keys its Properties do not name.
	PreserveUnknownFields bool `json:"preserveUnknownFields,omitempty"`

	index map[string]int32 // property name -> type, built by Schemas.init
	// proto maps a property's protobuf field (protoKey) to its index in
	// Properties; inline holds the protoKeys of inline messages. Built by
	// Schemas.init.
	proto  map[string]int32
	inline map[string]bool
}

// Property is one named field of an object type.
type Property struct {
	Name string `json:"name"`
	Type int32  `json:"type"`
	// Proto is the field number of the property in the type's protobuf
	// message (k8s.io/api's generated.proto), 0 when it has none
	// (apiVersion and kind, which protobuf bodies carry in their envelope;
	// types without a message, such as custom resources'). ProtoIn, when
	// not empty, are the numbers of the message fields that hold the
	// property instead, outermost first: a Go struct embedded inline in
	// JSON is a message of its own in protobuf (Volume's VolumeSource is
	// field 2, hostPath field 1 of it: Proto 1, ProtoIn [2]).
	Proto   int32   `json:"proto,omitempty"`
	ProtoIn []int32 `json:"protoIn,omitempty"`
}

// ProtoKey names a protobuf field of an object type: the numbers of the
// inline messages it is in, then its own, as the bytes of a string
// (ProtoProperty, ProtoInline). Append to a key to step into an inline
// message.
func ProtoKey(key []byte, number int32) []byte {
	return append(key, byte(number>>24), byte(number>>16), byte(number>>8), byte(number))
}

// ProtoProperty returns the property of an object type at a ProtoKey.
func (t *Type) ProtoProperty(key []byte) (*Property, bool) {
	i, ok := t.proto[string(key)]
	if !ok {
		return nil, false
	}
	return &t.Properties[i], true
}

// ProtoInline reports whether a ProtoKey of an object type is an inline
// message holding some of its properties (see Property).
func (t *Type) ProtoInline(key []byte) bool { return t.inline[string(key)] }

// HasProto reports whether an object type has protobuf field numbers.
func (t *Type) HasProto() bool { return len(t.proto) > 0 }

// Property returns the type of the object property name.
func (t *Type) Property(name string) (int32, bool) {
	i, ok := t.index[name]
	return i, ok
}

// PropertyBytes is Property for a name held as bytes (a JSON key), without
// allocating.
func (t *Type) PropertyBytes(name []byte) (int32, bool) {
	i, ok := t.index[string(name)]
	return i, ok
}

// Schemas are the request-body schemas of a catalog's operations: a table
// of types and, per operation that takes a body, the type of that body.
// They are kept apart from the Catalog and loaded only when asked for
// (Catalog.Schemas, LoadSchemas), because the sidecar links the catalog and
// must not hold them in memory when it records no bodies. Schemas are
// shared: do not modify them.
//
// # Field paths
//
// A field path names a field by the steps from the body's root, joined
// with '.'; a list's items are the step "[]" and a map's values "{}", both
// appended without a '.': spec.template.spec.containers[].image,
// metadata.labels{}. The paths of a type (FieldPaths) are every field it
// declares at any depth; descending stops at a named type already on the
// way down (JSONSchemaProps holds JSONSchemaProps) and at free-form values
// (KindAny, and the undeclared keys of PreserveUnknownFields objects).
type Schemas struct {
	// Release and Source are those of the catalog the schemas belong to.
	Release string `json:"release"`
	Source  string `json:"source,omitempty"`
	// Types is the table; Types[0] is always the any type.
	Types []Type `json:"types"`
	// Bodies maps operationId to the type of its request body. A patch
	// operation maps to the type it patches (its 200 response), since
	// OpenAPI documents give every patch body the opaque type
	// io.k8s.apimachinery.pkg.apis.meta.v1.Patch.
	Bodies map[string]int32 `json:"bodies"`
	// Unresolved lists definitions referred to but missing from the
	// documents; they stand for the any type.
	Unresolved []string `json:"unresolved,omitempty"`

	counts sync.Map // root type -> *countEntry
}

// MaxFieldPaths bounds the field paths enumerated for one type;
// mutually recursive definitions in a custom resource could otherwise make
// the enumeration explode. Built-in bodies have at most a few thousand.
const MaxFieldPaths = 50000

// Body returns the type of an operation's request body.
func (s *Schemas) Body(operationID string) (int32, bool) {
	t, ok := s.Bodies[operationID]
	return t, ok
}

// Type returns a type of the table by index.
func (s *Schemas) Type(i int32) *Type { return &s.Types[i] }

// FieldPaths returns, sorted, the field paths of an operation's body
// schema (see Schemas), or nil when the operation takes no body. It builds
// a new slice on every call; FieldCount and HasFieldPath answer without
// one.
func (s *Schemas) FieldPaths(operationID string) []string {
	t, ok := s.Bodies[operationID]
	if !ok {
		return nil
	}
	return s.FieldPathsOf(t)
}

// FieldPathsOf returns, sorted, the field paths of a type of the table.
func (s *Schemas) FieldPathsOf(t int32) []string {
	var out []string
	s.enumerate(t, func(path string) { out = append(out, path) })
	sort.Strings(out)
	return slices.Compact(out)
}

// FieldCount returns how many field paths an operation's body schema has
// (len(FieldPaths), without building them), 0 when it takes no body. It is
// computed once per type.
func (s *Schemas) FieldCount(operationID string) int {
	t, ok := s.Bodies[operationID]
	if !ok {
		return 0
	}
	value, _ := s.counts.LoadOrStore(t, &countEntry{})
	entry := value.(*countEntry)
	entry.once.Do(func() {
		// Paths are distinct by construction: a type's properties have
		// distinct names and the steps [] and {} are never names.
		s.enumerate(t, func(string) { entry.count++ })
	})
	return entry.count
}

type countEntry struct {
	once  sync.Once
	count int
}

// enumerate calls emit with every field path of type t, stopping after
// MaxFieldPaths.
func (s *Schemas) enumerate(t int32, emit func(string)) {
	e := pathEnumerator{s: s, onPath: map[int32]bool{t: true}, emit: emit}
	e.walk(t, "")
}

type pathEnumerator struct {
	s       *Schemas
	onPath  map[int32]bool
	emit    func(string)
	emitted int
}

func (e *pathEnumerator) walk(t int32, prefix string) {
	typ := &e.s.Types[t]
	switch typ.Kind {
	case KindObject:
		for _, p := range typ.Properties {
			e.add(p.Type, JoinPath(prefix, p.Name))
		}
	case KindArray:
		e.add(typ.Elem, prefix+"[]")
	case KindMap:
		e.add(typ.Elem, prefix+"{}")
	}
}

func (e *pathEnumerator) add(t int32, path string) {
	if e.emitted >= MaxFieldPaths {
		return
	}
	e.emitted++
	e.emit(path)
	if e.onPath[t] {
		return
	}
	e.onPath[t] = true
	e.walk(t, path)
	delete(e.onPath, t)
}

// HasFieldPath reports whether path is one of FieldPaths(operationID),
// following it through the types rather than listing them.
func (s *Schemas) HasFieldPath(operationID, path string) bool {
	_, ok := s.follow(operationID, path, true)
	return ok
}

// FieldType returns the type at a field path of an operation's body, at
// any depth (recursive types are followed as far as the path goes).
func (s *Schemas) FieldType(operationID, path string) (*Type, bool) {
	t, ok := s.follow(operationID, path, false)
	if !ok {
		return nil, false
	}
	return &s.Types[t], true
}

// follow walks path from the body type of an operation. With cut, it
// fails where the enumeration of field paths stops: past a type already on
// the way down.
func (s *Schemas) follow(operationID, path string, cut bool) (int32, bool) {
	t, ok := s.Bodies[operationID]
	if !ok || path == "" {
		return 0, false
	}
	seen := []int32{t}
	for rest, first := path, true; ; first = false {
		typ := &s.Types[t]
		var next int32
		switch {
		case typ.Kind == KindArray && strings.HasPrefix(rest, "[]"):
			next, rest = typ.Elem, rest[2:]
		case typ.Kind == KindMap && strings.HasPrefix(rest, "{}"):
			next, rest = typ.Elem, rest[2:]
		case typ.Kind == KindObject:
			if !first {
				// After the first step a property is introduced by '.'.
				var dot bool
				if rest, dot = strings.CutPrefix(rest, "."); !dot {
					return 0, false
				}
			}
			name := longestProperty(typ, rest)
			if name == "" {
				return 0, false
			}
			next, rest = typ.index[name], rest[len(name):]
		default:
			return 0, false
		}
		if rest == "" {
			return next, true
		}
		if cut && slices.Contains(seen, next) {
			return 0, false
		}
		seen = append(seen, next)
		t = next
	}
}

// longestProperty returns the longest property name that path starts with
// as a whole step (followed by nothing, '.', "[]" or "{}"); property names
// of custom resources may hold dots.
func longestProperty(typ *Type, path string) string {
	best := ""
	for _, p := range typ.Properties {
		if len(p.Name) <= len(best) || !strings.HasPrefix(path, p.Name) {
			continue
		}
		if after := path[len(p.Name):]; after == "" || after[0] == '.' || strings.HasPrefix(after, "[]") || strings.HasPrefix(after, "{}") {
			best = p.Name
		}
	}
	return best
}

// JoinPath appends a field name to a field path.
func JoinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// init builds the property indexes and checks every reference, so that a
// walker can index the table without bounds failures even for schemas read
// from outside (a ConfigMap).
func (s *Schemas) init() error {
	if len(s.Types) == 0 || s.Types[0].Kind != KindAny || len(s.Types[0].Properties) != 0 {
		return errors.New("check schemas: the first type is not the any type")
	}
	n := int32(len(s.Types))
	for i := range s.Types {
		t := &s.Types[i]
		if int(t.Kind) >= len(kindNames) {
			return fmt.Errorf("check schemas: type %d has kind %d", i, t.Kind)
		}
		if t.Elem < 0 || t.Elem >= n {
			return fmt.Errorf("check schemas: type %d refers to type %d of %d", i, t.Elem, n)
		}
		t.index = make(map[string]int32, len(t.Properties))
		t.proto, t.inline = nil, nil
		for j, p := range t.Properties {
			if p.Type < 0 || p.Type >= n {
				return fmt.Errorf("check schemas: property %s of type %d refers to type %d of %d", p.Name, i, p.Type, n)
			}
			t.index[p.Name] = p.Type
			if p.Proto < 0 || (p.Proto == 0 && len(p.ProtoIn) > 0) || slices.ContainsFunc(p.ProtoIn, func(n int32) bool { return n <= 0 }) {
				return fmt.Errorf("check schemas: property %s of type %d has protobuf field %d in %v", p.Name, i, p.Proto, p.ProtoIn)
			}
			if p.Proto == 0 {
				continue
			}
			if t.proto == nil {
				t.proto, t.inline = map[string]int32{}, map[string]bool{}
			}
			var key []byte
			for _, in := range p.ProtoIn {
				key = ProtoKey(key, in)
				t.inline[string(key)] = true
			}
			key = ProtoKey(key, p.Proto)
			if _, dup := t.proto[string(key)]; dup {
				return fmt.Errorf("check schemas: type %d has two properties at protobuf field %d in %v", i, p.Proto, p.ProtoIn)
			}
			t.proto[string(key)] = int32(j)
		}
		for key := range t.inline {
			if _, clash := t.proto[key]; clash {
				return fmt.Errorf("check schemas: type %d has a protobuf field both inline and a property", i)
			}
		}
	}
	for id, t := range s.Bodies {
		if t < 0 || t >= n {
			return fmt.Errorf("check schemas: body of %s refers to type %d of %d", id, t, n)
		}
	}
	return nil
}

// ErrNoSchemas is returned by Catalog.Schemas for a catalog that has none:
// one decoded from outside or derived from a document without them.
var ErrNoSchemas = errors.New("catalog has no body schemas")

// schemaSource says where a catalog's schemas come from; it is set before
// the catalog is shared and read-only afterwards.
type schemaSource struct {
	embedded bool                     // Load: LoadSchemas(Release)
	schemas  *Schemas                 // SetSchemas
	load     func() (*Schemas, error) // SetSchemasLoader, called once
}

// Schemas returns the request-body schemas of the catalog's operations: for
// an embedded catalog (Load) those of its release, loaded on first use; for
// a catalog given schemas with SetSchemas (package openapiv3 does) those;
// for one given a loader with SetSchemasLoader what it returned.
func (c *Catalog) Schemas() (*Schemas, error) {
	switch {
	case c.schemaSource.schemas != nil:
		return c.schemaSource.schemas, nil
	case c.schemaSource.load != nil:
		return c.schemaSource.load()
	case c.schemaSource.embedded:
		return LoadSchemas(c.Release)
	}
	return nil, fmt.Errorf("catalog %s: %w", c.Release, ErrNoSchemas)
}

// SetSchemas gives a catalog its schemas. Call it before the catalog is
// shared.
func (c *Catalog) SetSchemas(s *Schemas) { c.schemaSource.schemas = s }

// SetSchemasLoader gives a catalog a function that loads its schemas. It is
// called once, by the first call of Schemas, and every call returns its
// result, error included: a catalog decoded from a file (the sidecar's)
// reads its schemas from another only when a body needs them. Call it
// before the catalog is shared.
func (c *Catalog) SetSchemasLoader(load func() (*Schemas, error)) {
	c.schemaSource.load = sync.OnceValues(load)
}

const schemasDir = "data/schemas"

var schemaCache sync.Map // release -> *schemaCacheEntry

type schemaCacheEntry struct {
	once    sync.Once
	schemas *Schemas
	err     error
}

// LoadSchemas returns the embedded schemas of a release ("1.37" or
// "v1.37.2"), decoded on first use and shared afterwards.
func LoadSchemas(release string) (*Schemas, error) {
	release = NormalizeRelease(release)
	if !slices.Contains(embeddedReleases(), release) {
		return nil, fmt.Errorf("load schemas %q (have %s): %w", release, strings.Join(embeddedReleases(), ", "), ErrUnsupportedRelease)
	}
	value, _ := schemaCache.LoadOrStore(release, &schemaCacheEntry{})
	entry := value.(*schemaCacheEntry)
	entry.once.Do(func() { entry.schemas, entry.err = loadSchemasUncached(release) })
	return entry.schemas, entry.err
}

func loadSchemasUncached(release string) (*Schemas, error) {
	compressed, err := embedded.ReadFile(path.Join(schemasDir, release+dataSuffix))
	if err != nil {
		return nil, fmt.Errorf("read schemas %s: %w", release, err)
	}
	return DecodeSchemas(compressed)
}

// schemasCodec: a release's schemas decode to about 1 MB of JSON.
var schemasCodec = &zjson.Codec{Name: "schemas", Level: zstd.SpeedBestCompression, MaxDecoded: 64 << 20}

// EncodeSchemas serialises schemas the way they are embedded: JSON, zstd
// compressed, the same bytes for the same schemas.
func EncodeSchemas(s *Schemas) ([]byte, error) { return schemasCodec.Encode(s) }

// DecodeSchemas reverses EncodeSchemas and checks every reference.
func DecodeSchemas(compressed []byte) (*Schemas, error) {
	var s Schemas
	if err := schemasCodec.Decode(compressed, &s); err != nil {
		return nil, err
	}
	if err := s.init(); err != nil {
		return nil, err
	}
	return &s, nil
}
