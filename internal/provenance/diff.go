package provenance

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Change is one field that differs between two versions of an object.
type Change struct {
	// Path names the field: map keys joined by dots, list elements as
	// [name=x] when every element of both lists has a distinct name, else
	// as [index].
	Path string `json:"path"`
	// Old and New are its values; a field added has no Old, a field
	// removed no New.
	Old any `json:"old,omitempty"`
	New any `json:"new,omitempty"`
	// Kind is added, removed or changed.
	Kind string `json:"kind"`
}

// ignoredFields change with every write and say nothing about what the
// writer meant.
var ignoredFields = map[string]bool{"metadata.managedFields": true, "metadata.resourceVersion": true}

// Diff lists, field by field at any depth, what differs from a to b, in
// path order. metadata.managedFields and metadata.resourceVersion are left
// out.
func Diff(a, b map[string]any) []Change {
	var changes []Change
	diffValue("", a, b, &changes)
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].Path < changes[j].Path })
	return changes
}

func diffValue(path string, a, b any, out *[]Change) {
	if ignoredFields[path] {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			diffMaps(path, av, bv, out)
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			diffLists(path, av, bv, out)
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, Change{Path: path, Old: a, New: b, Kind: "changed"})
	}
}

func diffMaps(path string, a, b map[string]any, out *[]Change) {
	for k, av := range a {
		p := join(path, k)
		if bv, ok := b[k]; ok {
			diffValue(p, av, bv, out)
		} else if !ignoredFields[p] {
			*out = append(*out, Change{Path: p, Old: av, Kind: "removed"})
		}
	}
	for k, bv := range b {
		p := join(path, k)
		if _, ok := a[k]; !ok && !ignoredFields[p] {
			*out = append(*out, Change{Path: p, New: bv, Kind: "added"})
		}
	}
}

func diffLists(path string, a, b []any, out *[]Change) {
	if an, bn, ok := namedElements(a, b); ok {
		for name, av := range an {
			p := fmt.Sprintf("%s[name=%s]", path, name)
			if bv, ok := bn[name]; ok {
				diffValue(p, av, bv, out)
			} else {
				*out = append(*out, Change{Path: p, Old: av, Kind: "removed"})
			}
		}
		for name, bv := range bn {
			if _, ok := an[name]; !ok {
				*out = append(*out, Change{Path: fmt.Sprintf("%s[name=%s]", path, name), New: bv, Kind: "added"})
			}
		}
		return
	}
	for i := 0; i < max(len(a), len(b)); i++ {
		p := path + "[" + strconv.Itoa(i) + "]"
		switch {
		case i >= len(a):
			*out = append(*out, Change{Path: p, New: b[i], Kind: "added"})
		case i >= len(b):
			*out = append(*out, Change{Path: p, Old: a[i], Kind: "removed"})
		default:
			diffValue(p, a[i], b[i], out)
		}
	}
}

// namedElements indexes two lists by their elements' name field, when
// every element of both has a distinct one (containers, ports, volumes,
// env): an element inserted in the middle then shows as one added element,
// not as every later element changed.
func namedElements(a, b []any) (map[string]any, map[string]any, bool) {
	index := func(list []any) (map[string]any, bool) {
		m := make(map[string]any, len(list))
		for _, el := range list {
			obj, ok := el.(map[string]any)
			if !ok {
				return nil, false
			}
			name, ok := obj["name"].(string)
			if !ok || m[name] != nil {
				return nil, false
			}
			m[name] = el
		}
		return m, true
	}
	an, ok := index(a)
	if !ok || len(a) == 0 && len(b) == 0 {
		return nil, nil, false
	}
	bn, ok := index(b)
	return an, bn, ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// FormatValue prints a field's value on one line: scalars as they are,
// strings unquoted, maps and lists as compact JSON.
func FormatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(string(data))
}
