// Package fields walks request bodies against their operation's schema
// (catalog.Schemas) and tells which field paths a body sets, which of its
// fields the schema does not know, and which values do not fit the schema.
//
// # What a body sets
//
// Paths are catalog field paths: steps joined with '.', list items as
// "[]", map values as "{}" (spec.template.spec.containers[].image,
// metadata.labels{}). A body sets every path it reaches, the intermediate
// ones included: {"metadata":{"labels":{"a":"b"}}} sets metadata,
// metadata.labels and metadata.labels{}. A field written as null is set
// (in a merge or strategic merge patch it deletes the field; either way
// the body names it), and null fits every type.
//
//   - Object (create, update, the body of any POST, PUT or DELETE) and
//     ApplyPatch (server-side apply, a partial object) are walked as
//     objects.
//   - MergePatch (RFC 7386) is walked as an object: its nulls delete, its
//     lists replace, and both name the fields they touch.
//   - StrategicMergePatch is walked as an object whose directives are not
//     fields: $patch (replace, merge or delete; anything else does not
//     fit), $retainKeys (names it lists that the object lacks are
//     unknown), $setElementOrder/<list> (sets <list>, which must be a
//     list), $deleteFromPrimitiveList/<list> (sets <list> and <list>[],
//     its values are checked against the list's items). Any other key
//     starting with '$' in an object is unknown.
//   - JSONPatch (RFC 6902) sets the paths its operations name: add,
//     replace and test set their path and whatever their value sets below
//     it, checked against the schema; remove sets its path (the field it
//     deletes); move and copy set both from and path (a field moved away or
//     read from counts as touched). A JSON pointer step into a list must be
//     an index or "-", else it is unknown.
//
// Values the schema leaves free (KindAny, the undeclared keys of objects
// that preserve unknown fields) are not looked into: such an undeclared
// key is set, not unknown, and nothing below it is reported. An unknown
// field is reported where it starts, not below. A value of the wrong JSON
// type, or a string outside its enum, is ill-typed; its path is also set,
// and an ill-typed value is not looked into either. An integer is a JSON
// number without fraction or exponent, as Kubernetes' decoder wants it.
//
// A body that is not JSON of its kind (not an object, not a JSON patch
// array of operations with op and path, invalid pointers) is an error,
// ErrMalformed; no partial result is returned. YAML bodies are not read: an
// apply patch written as YAML is ErrNotJSON.
//
// Creates and updates in Kubernetes' protobuf encoding (Protobuf) are read
// by the protobuf field numbers the schemas carry; see Walker.protobuf for
// how their results differ from those of the same object in JSON.
package fields

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// BodyKind is how a request body is written.
type BodyKind uint8

const (
	// Object is a full object: the body of a create, an update (PUT) or
	// any other POST.
	Object BodyKind = iota
	// JSONPatch is application/json-patch+json (RFC 6902).
	JSONPatch
	// MergePatch is application/merge-patch+json (RFC 7386).
	MergePatch
	// StrategicMergePatch is application/strategic-merge-patch+json.
	StrategicMergePatch
	// ApplyPatch is application/apply-patch+yaml written as JSON
	// (server-side apply): a partial object.
	ApplyPatch
	// Protobuf is a full object in Kubernetes' protobuf encoding
	// (ProtobufContentType), the body of a create or an update; see
	// Walker.protobuf for what it sets.
	Protobuf
)

var kindNames = [...]string{"object", "json-patch", "merge-patch", "strategic-merge-patch", "apply-patch", "protobuf"}

func (k BodyKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("BodyKind(%d)", k)
}

// KindOf tells how a request's body is written from its method and
// Content-Type. ok is false for bodies this package cannot read: CBOR,
// protobuf other than a POST or PUT (a patch is never protobuf), and
// patches of unknown type. YAML apply patches are reported as
// ApplyPatch; Walk accepts them only when they are written as JSON, which
// kubectl and client-go do.
func KindOf(method, contentType string) (kind BodyKind, ok bool) {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mediaType = strings.ToLower(strings.TrimSpace(contentType))
	}
	if strings.EqualFold(method, "PATCH") {
		switch mediaType {
		case "application/json-patch+json":
			return JSONPatch, true
		case "application/merge-patch+json":
			return MergePatch, true
		case "application/strategic-merge-patch+json":
			return StrategicMergePatch, true
		case "application/apply-patch+yaml":
			return ApplyPatch, true
		}
		return 0, false
	}
	switch mediaType {
	case "", "application/json", "*/*":
		return Object, true
	case ProtobufContentType:
		if strings.EqualFold(method, "POST") || strings.EqualFold(method, "PUT") {
			return Protobuf, true
		}
	}
	return 0, false
}

// Result is what a body sets. Every list is sorted and free of repeats.
type Result struct {
	// Set are the schema's field paths the body sets.
	Set []string `json:"set,omitempty"`
	// Unknown are field paths the schema does not have, where they start.
	Unknown []string `json:"unknown,omitempty"`
	// IllTyped are the paths of values that do not fit the schema: wrong
	// JSON type, or not in the enum. They are in Set too.
	IllTyped []string `json:"illTyped,omitempty"`
}

// ErrNoSchema is returned for an operation without a body schema.
var ErrNoSchema = errors.New("no body schema")

// ErrMalformed is wrapped by the error for a body that is not JSON of its
// kind.
var ErrMalformed = errors.New("malformed body")

// ErrNotJSON is returned for an apply patch that is not written as JSON
// (YAML, which the API server also accepts); such a body is not read, and
// is not malformed either.
var ErrNotJSON = errors.New("apply patch not written as JSON")

// maxDepth bounds nesting, as encoding/json (which Kubernetes decodes
// with) does.
const maxDepth = 10000

// maxNodes bounds the path cache of a Walker; past it the cache starts
// over. Schema paths are bounded, but undeclared keys of objects that
// preserve unknown fields and recursive schemas are not.
const maxNodes = 1 << 17

// node is one field path, cached so that a path's string is built once per
// Walker rather than once per body.
type node struct {
	path        string
	children    map[string]*node
	item, value *node // "[]" and "{}"
	gen         uint32
}

// Walker walks bodies against one Schemas. It keeps a cache of paths and
// scratch buffers between bodies, so keep one per goroutine: it is not
// safe for concurrent use.
type Walker struct {
	schemas *catalog.Schemas
	root    *node
	nodes   int
	gen     uint32

	data  []byte
	pos   int
	depth int
	smp   bool

	set      []*node
	unknown  []string
	illTyped []string
	keyBuf   []byte
	strBuf   []byte
}

// NewWalker returns a walker for bodies of the operations of s.
func NewWalker(s *catalog.Schemas) *Walker {
	return &Walker{schemas: s, root: &node{}}
}

// Walk is Walker.Walk with a fresh walker; use a Walker for many bodies.
func Walk(s *catalog.Schemas, operationID string, kind BodyKind, body []byte) (Result, error) {
	return NewWalker(s).Walk(operationID, kind, body)
}

// Walk reads a body of an operation.
func (w *Walker) Walk(operationID string, kind BodyKind, body []byte) (Result, error) {
	t, ok := w.schemas.Body(operationID)
	if !ok {
		return Result{}, fmt.Errorf("walk body of %s: %w", operationID, ErrNoSchema)
	}
	return w.WalkType(t, kind, body)
}

// WalkType reads a body of type t of the walker's Schemas.
func (w *Walker) WalkType(t int32, kind BodyKind, body []byte) (Result, error) {
	if t < 0 || int(t) >= len(w.schemas.Types) {
		return Result{}, fmt.Errorf("walk body: type %d of %d: %w", t, len(w.schemas.Types), ErrNoSchema)
	}
	if kind == Protobuf {
		w.start(nil, false)
		if err := w.protobuf(t, body); err != nil {
			return Result{}, fmt.Errorf("walk body: %w", err)
		}
		return w.result(), nil
	}
	w.start(body, kind == StrategicMergePatch)
	if kind == ApplyPatch {
		// YAML unless it is JSON; a JSON body that is not an object is
		// malformed below.
		if w.skipSpace(); w.pos < len(w.data) && w.data[w.pos] != '{' && !json.Valid(body) {
			w.data = nil
			return Result{}, fmt.Errorf("walk body: %w", ErrNotJSON)
		}
	}
	var err error
	switch kind {
	case Object, ApplyPatch, MergePatch, StrategicMergePatch:
		err = w.document(t)
	case JSONPatch:
		err = w.jsonPatch(t)
	default:
		err = fmt.Errorf("walk body: unknown body kind %d", kind)
	}
	if err == nil {
		w.skipSpace()
		if w.pos < len(w.data) {
			err = w.syntax("data after the body")
		}
	}
	w.data = nil
	if err != nil {
		return Result{}, err
	}
	return w.result(), nil
}

func (w *Walker) start(body []byte, smp bool) {
	w.gen++
	if w.gen == 0 || w.nodes > maxNodes {
		w.root, w.nodes, w.gen = &node{}, 0, 1
	}
	w.data, w.pos, w.depth, w.smp = body, 0, 0, smp
	w.set, w.unknown, w.illTyped = w.set[:0], w.unknown[:0], w.illTyped[:0]
}

func (w *Walker) result() Result {
	var r Result
	if len(w.set) > 0 {
		r.Set = make([]string, len(w.set))
		for i, n := range w.set {
			r.Set[i] = n.path
		}
		slices.Sort(r.Set)
	}
	r.Unknown = sortedUnique(w.unknown)
	r.IllTyped = sortedUnique(w.illTyped)
	return r
}

func sortedUnique(paths []string) []string {
	if len(paths) == 0 {
		return nil
	}
	out := slices.Clone(paths)
	slices.Sort(out)
	return slices.Compact(out)
}

// syntax returns an ErrMalformed error at the current offset.
func (w *Walker) syntax(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrMalformed, what, w.pos)
}

func (w *Walker) mark(n *node) {
	if n.gen != w.gen {
		n.gen = w.gen
		w.set = append(w.set, n)
	}
}

func (w *Walker) child(n *node, name []byte) *node {
	if c := n.children[string(name)]; c != nil {
		return c
	}
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	key := string(name)
	c := &node{path: catalog.JoinPath(n.path, key)}
	n.children[key] = c
	w.nodes++
	return c
}

func (w *Walker) itemOf(n *node) *node {
	if n.item == nil {
		n.item = &node{path: n.path + "[]"}
		w.nodes++
	}
	return n.item
}

func (w *Walker) valueOf(n *node) *node {
	if n.value == nil {
		n.value = &node{path: n.path + "{}"}
		w.nodes++
	}
	return n.value
}

func (w *Walker) addUnknown(n *node, name []byte) {
	w.unknown = append(w.unknown, catalog.JoinPath(n.path, validUTF8(name)))
}

// validUTF8 replaces each byte of an invalid UTF-8 sequence with U+FFFD,
// as encoding/json does when it decodes a string.
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		out.WriteRune(r) // RuneError for an invalid byte, size 1
		b = b[size:]
	}
	return out.String()
}

func (w *Walker) addIllTyped(path string) { w.illTyped = append(w.illTyped, path) }

// document walks a body that must be a JSON object.
func (w *Walker) document(t int32) error {
	w.skipSpace()
	if w.pos >= len(w.data) || w.data[w.pos] != '{' {
		return w.syntax("body is not a JSON object")
	}
	return w.value(t, w.root)
}

// value walks the value at the current position as type t at path n.
func (w *Walker) value(t int32, n *node) error {
	w.skipSpace()
	if w.pos >= len(w.data) {
		return w.syntax("unexpected end of body")
	}
	typ := &w.schemas.Types[t]
	switch c := w.data[w.pos]; {
	case c == '{':
		switch typ.Kind {
		case catalog.KindObject:
			return w.object(typ, n)
		case catalog.KindMap:
			return w.mapValue(typ, n)
		case catalog.KindAny:
			return w.skip()
		}
	case c == '[':
		switch typ.Kind {
		case catalog.KindArray:
			return w.array(typ, n)
		case catalog.KindAny:
			return w.skip()
		}
	case c == '"':
		switch typ.Kind {
		case catalog.KindString:
			s, err := w.scanString(&w.strBuf)
			if err != nil {
				return err
			}
			if len(typ.Enum) > 0 && !inEnum(typ.Enum, s) {
				w.addIllTyped(n.path)
			}
			return nil
		case catalog.KindIntOrString, catalog.KindQuantity, catalog.KindAny:
			return w.skipString()
		}
	case c == 'n':
		return w.literal("null")
	case c == 't' || c == 'f':
		if typ.Kind == catalog.KindBoolean || typ.Kind == catalog.KindAny {
			return w.boolean()
		}
	case c == '-' || (c >= '0' && c <= '9'):
		switch typ.Kind {
		case catalog.KindNumber, catalog.KindQuantity, catalog.KindAny:
			_, err := w.number()
			return err
		case catalog.KindInteger, catalog.KindIntOrString:
			integer, err := w.number()
			if err == nil && !integer {
				w.addIllTyped(n.path)
			}
			return err
		}
	default:
		return w.syntax(fmt.Sprintf("unexpected %q", c))
	}
	w.addIllTyped(n.path)
	return w.skip()
}

func inEnum(enum []string, s []byte) bool {
	for _, e := range enum {
		if e == string(s) {
			return true
		}
	}
	return false
}

func (w *Walker) enter() error {
	w.depth++
	if w.depth > maxDepth {
		return w.syntax("nesting too deep")
	}
	return nil
}

// members walks the members of the object at the current position, calling
// member with each key (valid until the next call) positioned at its
// value, which member must consume.
func (w *Walker) members(member func(key []byte) error) error {
	w.pos++ // '{'
	if err := w.enter(); err != nil {
		return err
	}
	w.skipSpace()
	if w.pos < len(w.data) && w.data[w.pos] == '}' {
		w.pos++
		w.depth--
		return nil
	}
	for {
		w.skipSpace()
		if w.pos >= len(w.data) || w.data[w.pos] != '"' {
			return w.syntax("expected a member name")
		}
		key, err := w.scanString(&w.keyBuf)
		if err != nil {
			return err
		}
		w.skipSpace()
		if w.pos >= len(w.data) || w.data[w.pos] != ':' {
			return w.syntax("expected ':'")
		}
		w.pos++
		if err := member(key); err != nil {
			return err
		}
		w.skipSpace()
		if w.pos >= len(w.data) {
			return w.syntax("unexpected end of object")
		}
		switch w.data[w.pos] {
		case ',':
			w.pos++
		case '}':
			w.pos++
			w.depth--
			return nil
		default:
			return w.syntax("expected ',' or '}'")
		}
	}
}

// elements is members for arrays.
func (w *Walker) elements(element func() error) error {
	w.pos++ // '['
	if err := w.enter(); err != nil {
		return err
	}
	w.skipSpace()
	if w.pos < len(w.data) && w.data[w.pos] == ']' {
		w.pos++
		w.depth--
		return nil
	}
	for {
		if err := element(); err != nil {
			return err
		}
		w.skipSpace()
		if w.pos >= len(w.data) {
			return w.syntax("unexpected end of array")
		}
		switch w.data[w.pos] {
		case ',':
			w.pos++
		case ']':
			w.pos++
			w.depth--
			return nil
		default:
			return w.syntax("expected ',' or ']'")
		}
	}
}

func (w *Walker) object(typ *catalog.Type, n *node) error {
	return w.members(func(key []byte) error {
		if w.smp && len(key) > 0 && key[0] == '$' {
			return w.directive(typ, n, key)
		}
		if t, ok := typ.PropertyBytes(key); ok {
			c := w.child(n, key)
			w.mark(c)
			return w.value(t, c)
		}
		if typ.PreserveUnknownFields {
			w.mark(w.child(n, key))
		} else {
			w.addUnknown(n, key)
		}
		return w.skip()
	})
}

func (w *Walker) mapValue(typ *catalog.Type, n *node) error {
	item := w.valueOf(n)
	return w.members(func(key []byte) error {
		if w.smp && isDirective(key) {
			return w.directive(typ, n, key)
		}
		w.mark(item)
		return w.value(typ.Elem, item)
	})
}

func (w *Walker) array(typ *catalog.Type, n *node) error {
	item := w.itemOf(n)
	return w.elements(func() error {
		w.mark(item)
		return w.value(typ.Elem, item)
	})
}

const (
	setElementOrder         = "$setElementOrder/"
	deleteFromPrimitiveList = "$deleteFromPrimitiveList/"
)

// isDirective tells strategic merge patch directives from map keys.
func isDirective(key []byte) bool {
	return string(key) == "$patch" || string(key) == "$retainKeys" ||
		bytes.HasPrefix(key, []byte(setElementOrder)) || bytes.HasPrefix(key, []byte(deleteFromPrimitiveList))
}

// directive walks a strategic merge patch directive of the object or map n.
func (w *Walker) directive(typ *catalog.Type, n *node, key []byte) error {
	switch {
	case string(key) == "$patch":
		w.skipSpace()
		if w.pos < len(w.data) && w.data[w.pos] == '"' {
			s, err := w.scanString(&w.strBuf)
			if err != nil {
				return err
			}
			switch string(s) {
			case "replace", "merge", "delete":
				return nil
			}
			w.addIllTyped(catalog.JoinPath(n.path, "$patch"))
			return nil
		}
		w.addIllTyped(catalog.JoinPath(n.path, "$patch"))
		return w.skip()
	case string(key) == "$retainKeys":
		return w.retainKeys(typ, n)
	case bytes.HasPrefix(key, []byte(setElementOrder)), bytes.HasPrefix(key, []byte(deleteFromPrimitiveList)):
		order := bytes.HasPrefix(key, []byte(setElementOrder))
		name := key[bytes.IndexByte(key, '/')+1:]
		t, ok := int32(0), false
		if typ.Kind == catalog.KindObject {
			t, ok = typ.PropertyBytes(name)
		}
		if !ok {
			w.addUnknown(n, name)
			return w.skip()
		}
		c := w.child(n, name)
		w.mark(c)
		list := &w.schemas.Types[t]
		w.skipSpace()
		if list.Kind != catalog.KindArray || w.pos >= len(w.data) || w.data[w.pos] != '[' {
			w.addIllTyped(c.path)
			return w.skip()
		}
		if order {
			// The order lists items (or their merge keys) already named
			// elsewhere in the patch; it sets nothing of its own below.
			return w.skip()
		}
		return w.array(list, c)
	}
	w.addUnknown(n, key)
	return w.skip()
}

// retainKeys checks that the names $retainKeys lists are fields of the
// object.
func (w *Walker) retainKeys(typ *catalog.Type, n *node) error {
	w.skipSpace()
	if w.pos >= len(w.data) || w.data[w.pos] != '[' {
		w.addIllTyped(catalog.JoinPath(n.path, "$retainKeys"))
		return w.skip()
	}
	bad := false
	err := w.elements(func() error {
		w.skipSpace()
		if w.pos >= len(w.data) || w.data[w.pos] != '"' {
			bad = true
			return w.skip()
		}
		name, err := w.scanString(&w.strBuf)
		if err != nil {
			return err
		}
		if typ.Kind == catalog.KindObject && !typ.PreserveUnknownFields {
			if _, ok := typ.PropertyBytes(name); !ok {
				w.addUnknown(n, name)
			}
		}
		return nil
	})
	if bad {
		w.addIllTyped(catalog.JoinPath(n.path, "$retainKeys"))
	}
	return err
}

func (w *Walker) skipSpace() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// skip consumes and checks one value the schema says nothing about.
func (w *Walker) skip() error {
	w.skipSpace()
	if w.pos >= len(w.data) {
		return w.syntax("unexpected end of body")
	}
	switch c := w.data[w.pos]; {
	case c == '{':
		return w.members(func([]byte) error { return w.skip() })
	case c == '[':
		return w.elements(w.skip)
	case c == '"':
		return w.skipString()
	case c == 't' || c == 'f':
		return w.boolean()
	case c == 'n':
		return w.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := w.number()
		return err
	default:
		return w.syntax(fmt.Sprintf("unexpected %q", c))
	}
}

func (w *Walker) literal(word string) error {
	if !bytes.HasPrefix(w.data[w.pos:], []byte(word)) {
		return w.syntax("invalid literal")
	}
	w.pos += len(word)
	return nil
}

func (w *Walker) boolean() error {
	if w.data[w.pos] == 't' {
		return w.literal("true")
	}
	return w.literal("false")
}

// number consumes a JSON number and reports whether it is an integer (no
// fraction, no exponent).
func (w *Walker) number() (integer bool, err error) {
	d := w.data
	if w.pos < len(d) && d[w.pos] == '-' {
		w.pos++
	}
	switch {
	case w.pos < len(d) && d[w.pos] == '0':
		w.pos++
	case w.pos < len(d) && d[w.pos] >= '1' && d[w.pos] <= '9':
		w.digits()
	default:
		return false, w.syntax("invalid number")
	}
	integer = true
	if w.pos < len(d) && d[w.pos] == '.' {
		w.pos++
		if w.digits() == 0 {
			return false, w.syntax("invalid number")
		}
		integer = false
	}
	if w.pos < len(d) && (d[w.pos] == 'e' || d[w.pos] == 'E') {
		w.pos++
		if w.pos < len(d) && (d[w.pos] == '+' || d[w.pos] == '-') {
			w.pos++
		}
		if w.digits() == 0 {
			return false, w.syntax("invalid number")
		}
		integer = false
	}
	return integer, nil
}

func (w *Walker) digits() int {
	start := w.pos
	for w.pos < len(w.data) && w.data[w.pos] >= '0' && w.data[w.pos] <= '9' {
		w.pos++
	}
	return w.pos - start
}

// skipString consumes and checks a string.
func (w *Walker) skipString() error {
	_, err := w.scanString(nil)
	return err
}

// scanString consumes the string at the current position and returns its
// content: a slice of the body when it has no escapes, else unescaped into
// *buf, either valid until the next use of buf. With buf nil it only checks
// the string.
func (w *Walker) scanString(buf *[]byte) ([]byte, error) {
	d := w.data
	w.pos++ // opening quote
	start := w.pos
	// Fast path: no escapes.
	for w.pos < len(d) {
		c := d[w.pos]
		if c == '"' {
			w.pos++
			return d[start : w.pos-1], nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, w.syntax("control character in string")
		}
		w.pos++
	}
	if w.pos >= len(d) {
		return nil, w.syntax("unterminated string")
	}
	var out []byte
	if buf != nil {
		out = append((*buf)[:0], d[start:w.pos]...)
	}
	for w.pos < len(d) {
		c := d[w.pos]
		switch {
		case c == '"':
			w.pos++
			if buf != nil {
				*buf = out
			}
			return out, nil
		case c < 0x20:
			return nil, w.syntax("control character in string")
		case c != '\\':
			if buf != nil {
				out = append(out, c)
			}
			w.pos++
			continue
		}
		// An escape.
		if w.pos+1 >= len(d) {
			return nil, w.syntax("unterminated string")
		}
		e := d[w.pos+1]
		w.pos += 2
		var r rune
		switch e {
		case '"', '\\', '/':
			r = rune(e)
		case 'b':
			r = '\b'
		case 'f':
			r = '\f'
		case 'n':
			r = '\n'
		case 'r':
			r = '\r'
		case 't':
			r = '\t'
		case 'u':
			var ok bool
			if r, ok = w.hex4(); !ok {
				return nil, w.syntax("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// A pair is one character; a lone surrogate decodes to
				// U+FFFD, as encoding/json does.
				if w.pos+1 < len(d) && d[w.pos] == '\\' && d[w.pos+1] == 'u' {
					save := w.pos
					w.pos += 2
					low, ok := w.hex4()
					if !ok {
						return nil, w.syntax("invalid \\u escape")
					}
					if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
						r = pair
					} else {
						r, w.pos = utf8.RuneError, save
					}
				} else {
					r = utf8.RuneError
				}
			}
		default:
			return nil, w.syntax("invalid escape")
		}
		if buf != nil {
			out = utf8.AppendRune(out, r)
		}
	}
	return nil, w.syntax("unterminated string")
}

func (w *Walker) hex4() (rune, bool) {
	if w.pos+4 > len(w.data) {
		return 0, false
	}
	var r rune
	for _, c := range w.data[w.pos : w.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	w.pos += 4
	return r, true
}
