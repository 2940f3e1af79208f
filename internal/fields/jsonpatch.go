package fields

import (
	"bytes"
	"fmt"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// patchOp is one operation of a JSON patch as read, before it is applied
// to the schema. Strings point into the body or are copies.
type patchOp struct {
	op, path, from       []byte
	hasOp, hasPath       bool
	hasFrom, hasValue    bool
	valueStart, valueEnd int
}

// jsonPatch walks an RFC 6902 patch: an array of operations.
func (w *Walker) jsonPatch(root int32) error {
	w.skipSpace()
	if w.pos >= len(w.data) || w.data[w.pos] != '[' {
		return w.syntax("JSON patch is not an array")
	}
	return w.elements(func() error {
		w.skipSpace()
		if w.pos >= len(w.data) || w.data[w.pos] != '{' {
			return w.syntax("JSON patch operation is not an object")
		}
		op, err := w.readPatchOp()
		if err != nil {
			return err
		}
		return w.applyPatchOp(root, &op)
	})
}

// readPatchOp reads one operation object. Members other than op, path,
// from and value are ignored, as RFC 6902 says.
func (w *Walker) readPatchOp() (patchOp, error) {
	var op patchOp
	err := w.members(func(key []byte) error {
		switch string(key) {
		case "op", "path", "from":
			name := string(key) // key's buffer is reused by the value
			w.skipSpace()
			if w.pos >= len(w.data) || w.data[w.pos] != '"' {
				return w.syntax(fmt.Sprintf("JSON patch %q is not a string", name))
			}
			// A buffer of its own: escaped strings are unescaped into it
			// and must outlive the other members.
			var buf []byte
			value, err := w.scanString(&buf)
			if err != nil {
				return err
			}
			switch name {
			case "op":
				op.op, op.hasOp = value, true
			case "path":
				op.path, op.hasPath = value, true
			default:
				op.from, op.hasFrom = value, true
			}
			return nil
		case "value":
			w.skipSpace()
			op.valueStart = w.pos
			if err := w.skip(); err != nil {
				return err
			}
			op.valueEnd, op.hasValue = w.pos, true
			return nil
		}
		return w.skip()
	})
	return op, err
}

func (w *Walker) applyPatchOp(root int32, op *patchOp) error {
	if !op.hasOp {
		return w.syntax("JSON patch operation without op")
	}
	if !op.hasPath {
		return w.syntax("JSON patch operation without path")
	}
	if err := w.checkPointer(op.path); err != nil {
		return err
	}
	switch string(op.op) {
	case "add", "replace", "test":
		if !op.hasValue {
			return w.syntax(fmt.Sprintf("JSON patch %s without value", op.op))
		}
		t, n, ok := w.resolve(root, op.path)
		if !ok {
			return nil
		}
		// Walk the value where it stands in the body.
		resume := w.pos
		w.pos = op.valueStart
		err := w.value(t, n)
		w.pos = resume
		return err
	case "remove":
		w.resolve(root, op.path)
		return nil
	case "move", "copy":
		if !op.hasFrom {
			return w.syntax(fmt.Sprintf("JSON patch %s without from", op.op))
		}
		if err := w.checkPointer(op.from); err != nil {
			return err
		}
		w.resolve(root, op.from)
		w.resolve(root, op.path)
		return nil
	}
	return w.syntax(fmt.Sprintf("unknown JSON patch op %q", op.op))
}

// checkPointer checks RFC 6901 syntax: empty, or '/'-separated tokens
// whose '~' is followed by 0 or 1.
func (w *Walker) checkPointer(pointer []byte) error {
	if len(pointer) == 0 {
		return nil
	}
	if pointer[0] != '/' {
		return w.syntax(fmt.Sprintf("JSON pointer %q does not start with '/'", pointer))
	}
	for i := 0; i < len(pointer); i++ {
		if pointer[i] == '~' && (i+1 == len(pointer) || (pointer[i+1] != '0' && pointer[i+1] != '1')) {
			return w.syntax(fmt.Sprintf("JSON pointer %q has an invalid '~' escape", pointer))
		}
	}
	return nil
}

// resolve follows a checked JSON pointer through the schema, setting every
// path on the way. ok is false when it leaves the schema: an unknown field
// (reported), or a free-form value (not looked into).
func (w *Walker) resolve(root int32, pointer []byte) (t int32, n *node, ok bool) {
	t, n = root, w.root
	if len(pointer) == 0 {
		return t, n, true
	}
	rest := pointer[1:]
	for {
		raw, tail, more := bytes.Cut(rest, []byte("/"))
		token := raw
		if bytes.IndexByte(raw, '~') >= 0 {
			token = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("~1"), []byte("/")), []byte("~0"), []byte("~"))
		}
		typ := &w.schemas.Types[t]
		switch typ.Kind {
		case catalog.KindObject:
			prop, found := typ.PropertyBytes(token)
			switch {
			case found:
				n, t = w.child(n, token), prop
				w.mark(n)
			case typ.PreserveUnknownFields:
				w.mark(w.child(n, token))
				return 0, nil, false
			default:
				w.addUnknown(n, token)
				return 0, nil, false
			}
		case catalog.KindArray:
			if !isIndex(token) {
				w.addUnknown(n, token)
				return 0, nil, false
			}
			n, t = w.itemOf(n), typ.Elem
			w.mark(n)
		case catalog.KindMap:
			n, t = w.valueOf(n), typ.Elem
			w.mark(n)
		case catalog.KindAny:
			return 0, nil, false
		default:
			w.addUnknown(n, token)
			return 0, nil, false
		}
		if !more {
			return t, n, true
		}
		rest = tail
	}
}

// isIndex reports whether a pointer token can address a list item: a
// decimal index without leading zeros, or "-" (past the end).
func isIndex(token []byte) bool {
	if string(token) == "-" {
		return true
	}
	if len(token) == 0 || (token[0] == '0' && len(token) > 1) {
		return false
	}
	for _, c := range token {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
