package fields

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzWalk feeds arbitrary bytes as every kind of body of a Deployment, a
// ConfigMap and a custom resource. The walker must never panic, must fail
// only with ErrMalformed (or ErrNotJSON for an apply patch), must return sorted lists without repeats, and for
// objects must accept exactly what encoding/json accepts and find what
// encoding/json's reading finds (see oracle).
func FuzzWalk(f *testing.F) {
	deployment, err := os.ReadFile(filepath.Join("testdata", "deployment.json"))
	if err != nil {
		f.Fatal(err)
	}
	for kind := range BodyKind(len(kindNames)) {
		f.Add(deployment, uint8(kind))
	}
	for _, seed := range []string{
		`{"metadata":{"labels":{"a":"b"}},"data":{"x":null},"$patch":"replace"}`,
		`{"spec":{"$setElementOrder/containers":[{"name":"a"}],"$retainKeys":["x"],"$deleteFromPrimitiveList/finalizers":["f"]}}`,
		`[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"x"}},{"op":"move","from":"/a~1b","path":"/c~0d"}]`,
		`{"spec":{"size":"huge","parts":[{"name":"p","count":"4"}],"extra":{"a":[1,{"b":2}]}}}`,
		`{"a":"\ud83d\ude00\u00e9\ud800x","\u0062":[1.5e3,-0,true,false,null]}`,
		"{\"\xff\xfe\":1}",
	} {
		for kind := range BodyKind(len(kindNames)) {
			f.Add([]byte(seed), uint8(kind))
		}
	}
	s, g := builtin(f), gadgets(f)
	targets := []struct {
		walker *Walker
		op     string
	}{
		{NewWalker(s), "patchAppsV1NamespacedDeployment"},
		{NewWalker(s), "patchCoreV1NamespacedConfigMap"},
		{NewWalker(g), "patchExampleComV1NamespacedGadget"},
	}
	f.Fuzz(func(t *testing.T, body []byte, kindByte uint8) {
		kind := BodyKind(kindByte % uint8(len(kindNames)))
		for _, target := range targets {
			r, err := target.walker.Walk(target.op, kind, body)
			if err != nil && !errors.Is(err, ErrMalformed) && !(kind == ApplyPatch && errors.Is(err, ErrNotJSON)) {
				t.Fatalf("%s %s: error %v is not ErrMalformed", kind, target.op, err)
			}
			for _, list := range [][]string{r.Set, r.Unknown, r.IllTyped} {
				if !slices.IsSorted(list) || len(slices.Compact(slices.Clone(list))) != len(list) {
					t.Fatalf("%s %s: list not sorted and unique: %q", kind, target.op, list)
				}
			}
			if kind != Object {
				continue
			}
			isObject := json.Valid(body) && bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
			if (err == nil) != isObject {
				t.Fatalf("%s: walker error %v, but encoding/json says valid object = %v", target.op, err, isObject)
			}
			if err != nil {
				continue
			}
			root, _ := target.walker.schemas.Body(target.op)
			want, err := oracleWalk(target.walker.schemas, root, body)
			if err != nil {
				t.Fatalf("%s: encoding/json cannot read a body the walker read: %v", target.op, err)
			}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Fatalf("%s: walker differs from encoding/json's reading (-json +walker):\n%s", target.op, diff)
			}
		}
	})
}
