package provenance

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func object(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHoldsMatchesInsideOneListElement(t *testing.T) {
	pod := object(t, `{"spec":{"containers":[{"name":"app","image":"nginx:1.26"},{"name":"log","image":"nginx:1.27","args":["-v","--x"]}]}}`)
	for where, want := range map[string]bool{
		"spec.containers.name=app,spec.containers.image=nginx:1.26":     true,
		"spec.containers.name=app,spec.containers.image=nginx:1.27":     false, // true of two elements, not one
		"spec.containers[].name=log,spec.containers[].image=nginx:1.27": true,
		"spec.containers.args=--x":                                      true,
		"spec.containers.name=nope":                                     false,
		"spec.replicas=1":                                               false,
	} {
		conds, err := ParseWhere(where)
		if err != nil {
			t.Fatal(err)
		}
		if got := Holds(pod, conds); got != want {
			t.Errorf("%s: %v, want %v", where, got, want)
		}
	}
	for _, bad := range []string{"spec.replicas", "=3", "spec..replicas=3"} {
		if _, err := ParseWhere(bad); err == nil {
			t.Errorf("ParseWhere(%q) accepted", bad)
		}
	}
}

func TestDiffMatchesNamedElements(t *testing.T) {
	a := object(t, `{"metadata":{"resourceVersion":"1","labels":{"a":"1"}},"spec":{"replicas":1,"containers":[{"name":"app","image":"v1"}],"args":["x","y"]}}`)
	b := object(t, `{"metadata":{"resourceVersion":"2","labels":{"b":"2"}},"spec":{"replicas":2,"containers":[{"name":"init","image":"v0"},{"name":"app","image":"v2"}],"args":["x"]}}`)
	var got []string
	for _, c := range Diff(a, b) {
		got = append(got, c.Kind+" "+c.Path)
	}
	want := []string{
		"removed metadata.labels.a", "added metadata.labels.b", "removed spec.args[1]",
		"changed spec.containers[name=app].image", "added spec.containers[name=init]", "changed spec.replicas",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("diff:\n got %v\nwant %v", got, want)
	}
}

func TestRedactBody(t *testing.T) {
	for body, want := range map[string]string{
		`{"data":{"k":"c2VjcmV0"},"stringData":{"s":"secret"},"type":"Opaque"}`:                                                                        `{"data":{"k":"<redacted>"},"stringData":{"s":"<redacted>"},"type":"Opaque"}`,
		`[{"op":"replace","path":"/data/k","value":"c2VjcmV0"},{"op":"add","path":"/data","value":{"k":"c2VjcmV0"}},{"op":"remove","path":"/data/j"}]`: `[{"op":"replace","path":"/data/k","value":"<redacted>"},{"op":"add","path":"/data","value":{"k":"<redacted>"}},{"op":"remove","path":"/data/j"}]`,
		"data:\n  k: c2VjcmV0\n": "",
	} {
		got := redactBody([]byte(body))
		if want == "" {
			if got != nil {
				t.Errorf("redactBody(%q) = %s, want it dropped", body, got)
			}
			continue
		}
		var gotValue, wantValue any
		if err := json.Unmarshal(got, &gotValue); err != nil {
			t.Fatalf("redactBody(%s) = %s: %v", body, got, err)
		}
		_ = json.Unmarshal([]byte(want), &wantValue)
		if !reflect.DeepEqual(gotValue, wantValue) {
			t.Errorf("redactBody(%s) = %s, want %s", body, got, want)
		}
	}
}
