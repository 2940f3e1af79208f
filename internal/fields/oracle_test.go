package fields

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// oracle reads an object body with encoding/json's token stream and
// applies the walker's rules for Object bodies, so that tests and the fuzz
// target can check the walker's own JSON reading against Go's.
func oracle(t testing.TB, s *catalog.Schemas, op string, body []byte) Result {
	t.Helper()
	root, ok := s.Body(op)
	if !ok {
		t.Fatalf("no body schema for %s", op)
	}
	r, err := oracleWalk(s, root, body)
	if err != nil {
		t.Fatalf("encoding/json cannot read the body: %v", err)
	}
	return r
}

func oracleWalk(s *catalog.Schemas, root int32, body []byte) (Result, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	o := &oracleState{s: s, dec: dec, set: map[string]bool{}}
	if err := o.value(root, "", true); err != nil {
		return Result{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Result{}, errors.New("data after the body")
	}
	var r Result
	for path := range o.set {
		r.Set = append(r.Set, path)
	}
	slices.Sort(r.Set)
	r.Unknown = sortedUnique(o.unknown)
	r.IllTyped = sortedUnique(o.illTyped)
	return r, nil
}

type oracleState struct {
	s                 *catalog.Schemas
	dec               *json.Decoder
	set               map[string]bool
	unknown, illTyped []string
}

func (o *oracleState) value(t int32, path string, root bool) error {
	tok, err := o.dec.Token()
	if err != nil {
		return err
	}
	typ := o.s.Type(t)
	if root && tok != json.Delim('{') {
		return errors.New("not an object")
	}
	fits := true
	switch tok := tok.(type) {
	case json.Delim:
		switch {
		case tok == '{' && typ.Kind == catalog.KindObject:
			for o.dec.More() {
				keyTok, err := o.dec.Token()
				if err != nil {
					return err
				}
				key := keyTok.(string)
				if prop, ok := typ.Property(key); ok {
					o.set[catalog.JoinPath(path, key)] = true
					if err := o.value(prop, catalog.JoinPath(path, key), false); err != nil {
						return err
					}
					continue
				}
				if typ.PreserveUnknownFields {
					o.set[catalog.JoinPath(path, key)] = true
				} else {
					o.unknown = append(o.unknown, catalog.JoinPath(path, key))
				}
				if err := o.skip(); err != nil {
					return err
				}
			}
			_, err := o.dec.Token()
			return err
		case tok == '{' && typ.Kind == catalog.KindMap:
			for o.dec.More() {
				if _, err := o.dec.Token(); err != nil {
					return err
				}
				o.set[path+"{}"] = true
				if err := o.value(typ.Elem, path+"{}", false); err != nil {
					return err
				}
			}
			_, err := o.dec.Token()
			return err
		case tok == '[' && typ.Kind == catalog.KindArray:
			for o.dec.More() {
				o.set[path+"[]"] = true
				if err := o.value(typ.Elem, path+"[]", false); err != nil {
					return err
				}
			}
			_, err := o.dec.Token()
			return err
		}
		fits = typ.Kind == catalog.KindAny
		if err := o.skipRest(); err != nil {
			return err
		}
	case nil:
	case bool:
		fits = typ.Kind == catalog.KindBoolean || typ.Kind == catalog.KindAny
	case string:
		switch typ.Kind {
		case catalog.KindString:
			fits = len(typ.Enum) == 0 || slices.Contains(typ.Enum, tok)
		case catalog.KindIntOrString, catalog.KindQuantity, catalog.KindAny:
		default:
			fits = false
		}
	case json.Number:
		integer := !strings.ContainsAny(string(tok), ".eE")
		switch typ.Kind {
		case catalog.KindNumber, catalog.KindQuantity, catalog.KindAny:
		case catalog.KindInteger, catalog.KindIntOrString:
			fits = integer
		default:
			fits = false
		}
	}
	if !fits {
		o.illTyped = append(o.illTyped, path)
	}
	return nil
}

// skip consumes one value.
func (o *oracleState) skip() error {
	tok, err := o.dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
		return o.skipRest()
	}
	return nil
}

// skipRest consumes the rest of an object or array whose opening delimiter
// was read.
func (o *oracleState) skipRest() error {
	for depth := 1; depth > 0; {
		tok, err := o.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}
