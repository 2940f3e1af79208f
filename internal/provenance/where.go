package provenance

import (
	"fmt"
	"strings"
)

// Condition is FIELD=VALUE: a dotted field path (list steps may be written
// as name[] or just name) and the value it must have, compared as
// FormatValue prints it.
type Condition struct {
	Path  []string
	Value string
}

func (c Condition) String() string { return strings.Join(c.Path, ".") + "=" + c.Value }

// ParseWhere reads FIELD=VALUE[,FIELD=VALUE...].
func ParseWhere(expr string) ([]Condition, error) {
	var conds []Condition
	for _, part := range strings.Split(expr, ",") {
		field, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || field == "" {
			return nil, fmt.Errorf("%q is not FIELD=VALUE, such as spec.replicas=3 or spec.template.spec.containers.image=nginx:1.27", part)
		}
		var path []string
		for _, step := range strings.Split(field, ".") {
			step = strings.TrimSuffix(step, "[]")
			if step == "" {
				return nil, fmt.Errorf("%q has an empty step in its field path", field)
			}
			path = append(path, step)
		}
		conds = append(conds, Condition{Path: path, Value: value})
	}
	return conds, nil
}

// Holds reports whether all conditions hold on obj. Conditions whose paths
// go through the same list must hold inside one element of it: with
// containers.name=app,containers.image=nginx:1.27, one container must be
// both.
func Holds(obj map[string]any, conds []Condition) bool {
	if obj == nil {
		return false
	}
	return holds(obj, conds)
}

func holds(node any, conds []Condition) bool {
	if len(conds) == 0 {
		return true
	}
	if list, ok := node.([]any); ok {
		// One element must satisfy every condition that reached the list.
		for _, el := range list {
			if holds(el, conds) {
				return true
			}
		}
		return false
	}
	var rest []Condition
	for _, c := range conds {
		if len(c.Path) == 0 {
			if FormatValue(node) != c.Value {
				return false
			}
			continue
		}
		rest = append(rest, c)
	}
	if len(rest) == 0 {
		return true
	}
	m, ok := node.(map[string]any)
	if !ok {
		return false
	}
	// Group by the next step, so conditions sharing it descend together.
	byKey := map[string][]Condition{}
	var keys []string
	for _, c := range rest {
		if _, seen := byKey[c.Path[0]]; !seen {
			keys = append(keys, c.Path[0])
		}
		byKey[c.Path[0]] = append(byKey[c.Path[0]], Condition{Path: c.Path[1:], Value: c.Value})
	}
	for _, k := range keys {
		child, ok := m[k]
		if !ok || !holds(child, byKey[k]) {
			return false
		}
	}
	return true
}

// Bisect returns the first version whose object satisfies every condition,
// or nil. Versions whose object is unknown are passed over. It looks at
// every version in turn: a field may take a value, lose it and take it
// again, so the versions are not sorted by the condition and halving would
// not find the first.
func Bisect(h *History, conds []Condition) *Version {
	for i := range h.Versions {
		if Holds(h.Versions[i].Object, conds) {
			return &h.Versions[i]
		}
	}
	return nil
}
