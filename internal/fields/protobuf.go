package fields

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// ProtobufContentType is the media type of Kubernetes' protobuf encoding,
// which kubectl's generators (kubectl create configmap, ...) and client-go's
// typed clients send built-in objects in.
const ProtobufContentType = "application/vnd.kubernetes.protobuf"

// protobufMagic starts every body in ProtobufContentType.
var protobufMagic = []byte("k8s\x00")

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// protoValue is one field of a protobuf message.
type protoValue struct {
	number int32
	wire   int
	scalar uint64 // varint and fixed values
	data   []byte // length-delimited values
}

// zero reports whether a value is its type's zero value: proto2 messages
// of Kubernetes write non-pointer scalars even when they are zero, where
// JSON leaves them out (omitempty), so a zero scalar sets nothing.
func (v protoValue) zero() bool {
	if v.wire == wireBytes {
		return len(v.data) == 0
	}
	return v.scalar == 0
}

// nextField reads the field at the start of data and returns it with the
// rest of data.
func nextField(data []byte) (protoValue, []byte, error) {
	tag, n := varint(data)
	if n <= 0 {
		return protoValue{}, nil, fmt.Errorf("%w: invalid protobuf tag", ErrMalformed)
	}
	data = data[n:]
	number := tag >> 3
	if number == 0 || number > 1<<29-1 {
		return protoValue{}, nil, fmt.Errorf("%w: invalid protobuf field number %d", ErrMalformed, number)
	}
	v := protoValue{number: int32(number), wire: int(tag & 7)}
	switch v.wire {
	case wireVarint:
		if v.scalar, n = varint(data); n <= 0 {
			return protoValue{}, nil, fmt.Errorf("%w: invalid protobuf varint", ErrMalformed)
		}
	case wireFixed64, wireFixed32:
		n = 8
		if v.wire == wireFixed32 {
			n = 4
		}
		if len(data) < n {
			return protoValue{}, nil, fmt.Errorf("%w: truncated protobuf fixed value", ErrMalformed)
		}
		for i := n - 1; i >= 0; i-- {
			v.scalar = v.scalar<<8 | uint64(data[i])
		}
	case wireBytes:
		length, m := varint(data)
		if m <= 0 || length > uint64(len(data)-m) {
			return protoValue{}, nil, fmt.Errorf("%w: truncated protobuf length-delimited value", ErrMalformed)
		}
		v.data = data[m : m+int(length)]
		n = m + int(length)
	default:
		// Groups (3, 4) are not written by Kubernetes; 6 and 7 do not exist.
		return protoValue{}, nil, fmt.Errorf("%w: protobuf wire type %d", ErrMalformed, v.wire)
	}
	return v, data[n:], nil
}

// varint decodes a base-128 varint, returning its length, or 0 when data
// ends within it and -1 when it runs past 10 bytes.
func varint(data []byte) (uint64, int) {
	var x uint64
	for i := 0; i < len(data); i++ {
		if i == 10 {
			return 0, -1
		}
		b := data[i]
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

// eachField calls f with every field of a message.
func eachField(data []byte, f func(protoValue) error) error {
	for len(data) > 0 {
		v, rest, err := nextField(data)
		if err != nil {
			return err
		}
		if err := f(v); err != nil {
			return err
		}
		data = rest
	}
	return nil
}

// protobuf walks a body in Kubernetes' protobuf encoding: the magic
// "k8s\x00", then a runtime.Unknown message {typeMeta (apiVersion 1, kind
// 2) 1, raw 2, contentEncoding 3, contentType 4} whose raw holds the
// object's message. The object's fields are found by the schema's protobuf
// field numbers (catalog.Property); apiVersion and kind come from typeMeta.
//
// What differs from the JSON of the same object: a zero scalar (0, false,
// "", empty bytes) sets nothing, because Kubernetes' messages write
// non-pointer scalars even when zero; so a pointer field explicitly set to
// zero (replicas: 0) is not seen either, nor is a field JSON writes as null
// (creationTimestamp of a new object) or as an empty list or map. Messages,
// list items and map entries set their path whenever they are present, as
// in JSON. A field number the schema does not know is unknown, named
// "#<number>" (spec.#17); a value of the wrong wire type is ill-typed.
func (w *Walker) protobuf(t int32, body []byte) error {
	rest, ok := bytes.CutPrefix(body, protobufMagic)
	if !ok {
		return fmt.Errorf("%w: protobuf body does not start with k8s\\x00", ErrMalformed)
	}
	var apiVersion, kind, raw []byte
	var hasRaw bool
	err := eachField(rest, func(v protoValue) error {
		if v.wire != wireBytes {
			return nil // not a field of runtime.Unknown
		}
		switch v.number {
		case 1:
			return eachField(v.data, func(m protoValue) error {
				switch {
				case m.number == 1 && m.wire == wireBytes:
					apiVersion = m.data
				case m.number == 2 && m.wire == wireBytes:
					kind = m.data
				}
				return nil
			})
		case 2:
			raw, hasRaw = v.data, true
		case 3:
			if len(v.data) > 0 {
				// No client sends one; the API server refuses them.
				return fmt.Errorf("%w: protobuf body with content encoding %q", ErrMalformed, v.data)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !hasRaw {
		return fmt.Errorf("%w: protobuf body without an object", ErrMalformed)
	}
	typ := &w.schemas.Types[t]
	if typ.Kind != catalog.KindObject {
		return nil // a free-form body: nothing to look into
	}
	for _, field := range []struct {
		name  string
		value []byte
	}{{"apiVersion", apiVersion}, {"kind", kind}} {
		if _, ok := typ.Property(field.name); ok && len(field.value) > 0 {
			w.mark(w.child(w.root, []byte(field.name)))
		}
	}
	return w.protoMessage(t, w.root, raw, nil)
}

// protoMessage walks the fields of a message of object type t at path n;
// in is the ProtoKey of the inline message being walked, nil for the
// type's own.
func (w *Walker) protoMessage(t int32, n *node, data []byte, in []byte) error {
	if err := w.enter(); err != nil {
		return err
	}
	typ := &w.schemas.Types[t]
	err := eachField(data, func(v protoValue) error {
		var buf [32]byte
		key := catalog.ProtoKey(append(buf[:0], in...), v.number)
		if p, ok := typ.ProtoProperty(key); ok {
			return w.protoField(p.Type, n, []byte(p.Name), v)
		}
		if typ.ProtoInline(key) {
			if v.wire != wireBytes {
				w.addIllTyped(catalog.JoinPath(n.path, "#"+strconv.Itoa(int(v.number))))
				return nil
			}
			return w.protoMessage(t, n, v.data, key)
		}
		w.unknown = append(w.unknown, catalog.JoinPath(n.path, "#"+strconv.Itoa(int(v.number))))
		return nil
	})
	w.depth--
	return err
}

// protoField walks one occurrence of the field name, of type t, of the
// object at n.
func (w *Walker) protoField(t int32, n *node, name []byte, v protoValue) error {
	typ := &w.schemas.Types[t]
	c := w.child(n, name)
	switch typ.Kind {
	case catalog.KindArray:
		// A repeated field: each occurrence is an item, or, packed, a run
		// of numeric items.
		elem := &w.schemas.Types[typ.Elem]
		if v.wire == wireBytes && packable(elem.Kind) {
			w.mark(c)
			return w.packed(elem.Kind, c, v.data)
		}
		w.mark(c)
		return w.protoValue(typ.Elem, w.itemOf(c), v, true)
	case catalog.KindMap:
		w.mark(c)
		return w.mapEntry(typ, c, v)
	}
	return w.protoValue(t, c, v, false)
}

// packable kinds are those whose repeated fields may be packed.
func packable(k catalog.Kind) bool {
	return k == catalog.KindInteger || k == catalog.KindNumber || k == catalog.KindBoolean
}

// packed walks the items of a packed repeated field.
func (w *Walker) packed(k catalog.Kind, list *node, data []byte) error {
	item := w.itemOf(list)
	for len(data) > 0 {
		n := 0
		switch k {
		case catalog.KindNumber:
			// A double; a float list is not distinguishable, and none
			// exists in Kubernetes' types.
			n = 8
			if len(data) < n {
				return fmt.Errorf("%w: truncated packed protobuf list", ErrMalformed)
			}
		default:
			if _, n = varint(data); n <= 0 {
				return fmt.Errorf("%w: invalid packed protobuf varint", ErrMalformed)
			}
		}
		w.mark(item)
		data = data[n:]
	}
	return nil
}

// mapEntry walks one entry {key 1, value 2} of a map field.
func (w *Walker) mapEntry(typ *catalog.Type, m *node, v protoValue) error {
	if v.wire != wireBytes {
		w.addIllTyped(m.path)
		return nil
	}
	item := w.valueOf(m)
	w.mark(item)
	return eachField(v.data, func(f protoValue) error {
		if f.number != 2 {
			return nil
		}
		return w.protoValue(typ.Elem, item, f, true)
	})
}

// protoValue walks a value of type t at path n. item is true for list
// items and map values, which set their path even when zero.
func (w *Walker) protoValue(t int32, n *node, v protoValue, item bool) error {
	typ := &w.schemas.Types[t]
	ok := false
	switch typ.Kind {
	case catalog.KindAny:
		ok = true
	case catalog.KindObject:
		if v.wire == wireBytes {
			w.mark(n)
			return w.protoMessage(t, n, v.data, nil)
		}
	case catalog.KindArray, catalog.KindMap:
		// A list or map that is itself an item or a map value is a
		// message wrapping it (ExtraValue: items 1).
		if v.wire == wireBytes {
			w.mark(n)
			return eachField(v.data, func(f protoValue) error {
				if f.number != 1 {
					return nil
				}
				if typ.Kind == catalog.KindMap {
					return w.mapEntry(typ, n, f)
				}
				return w.protoValue(typ.Elem, w.itemOf(n), f, true)
			})
		}
	case catalog.KindString:
		if v.wire == wireBytes {
			if len(typ.Enum) > 0 && len(v.data) > 0 && !inEnum(typ.Enum, v.data) {
				w.mark(n)
				w.addIllTyped(n.path)
				return nil
			}
			ok = true
		}
	case catalog.KindIntOrString, catalog.KindQuantity:
		// Messages (intstr.IntOrString, resource.Quantity's string),
		// present when set.
		if v.wire == wireBytes {
			w.mark(n)
			return nil
		}
	case catalog.KindInteger, catalog.KindBoolean:
		ok = v.wire == wireVarint
	case catalog.KindNumber:
		ok = v.wire == wireFixed64 || v.wire == wireFixed32
	}
	if !ok {
		w.mark(n)
		w.addIllTyped(n.path)
		return nil
	}
	if item || !v.zero() {
		w.mark(n)
	}
	return nil
}

// ProtobufName reads metadata.name from an object in Kubernetes' protobuf
// encoding (field 1 of every object's message is its ObjectMeta, whose
// field 1 is the name): a create sent as protobuf names its object there
// only. It reports false when the body is not such an object or names
// none.
func ProtobufName(body []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(body, protobufMagic)
	if !ok {
		return "", false
	}
	var name []byte
	field := func(number int32, found func([]byte)) func(protoValue) error {
		return func(v protoValue) error {
			if v.number == number && v.wire == wireBytes {
				found(v.data)
			}
			return nil
		}
	}
	var raw, meta []byte
	if eachField(rest, field(2, func(b []byte) { raw = b })) != nil ||
		eachField(raw, field(1, func(b []byte) { meta = b })) != nil ||
		eachField(meta, field(1, func(b []byte) { name = b })) != nil {
		return "", false
	}
	return string(name), len(name) > 0 && utf8.Valid(name)
}
