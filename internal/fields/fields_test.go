package fields

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/openapiv3"
)

// builtin are the embedded schemas of 1.37, whose Deployment and ConfigMap
// bodies the tests walk.
func builtin(t testing.TB) *catalog.Schemas {
	t.Helper()
	s, err := catalog.LoadSchemas("1.37")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var gadgetSchemas = sync.OnceValues(func() (*catalog.Schemas, error) {
	// The OpenAPI v3 document a v1.37.2 API server serves for the Gadget
	// custom resource (internal/catalog/releases/testdata/gadgets.yaml),
	// descriptions removed.
	doc, err := os.ReadFile(filepath.Join("testdata", "gadgets-openapi-v3.json"))
	if err != nil {
		return nil, err
	}
	c, err := openapiv3.FromDocuments(map[string][]byte{"apis/example.com/v1": doc}, "1.37")
	if err != nil {
		return nil, err
	}
	return c.Schemas()
})

func gadgets(t testing.TB) *catalog.Schemas {
	t.Helper()
	s, err := gadgetSchemas()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type walkCase struct {
	name     string
	op       string
	kind     BodyKind
	body     string
	set      []string
	unknown  []string
	illTyped []string
}

func runCases(t *testing.T, s *catalog.Schemas, cases []walkCase) {
	t.Helper()
	w := NewWalker(s)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := w.Walk(c.op, c.kind, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Set: c.set, Unknown: c.unknown, IllTyped: c.illTyped}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s body of %s (-want +got):\n%s", c.kind, c.op, diff)
			}
			// A fresh walker, without the cached paths, says the same.
			again, err := Walk(s, c.op, c.kind, []byte(c.body))
			if err != nil || !cmp.Equal(again, got) {
				t.Errorf("a fresh walker gives %+v, %v", again, err)
			}
		})
	}
}

func TestDeploymentObject(t *testing.T) {
	s := builtin(t)
	body, err := os.ReadFile(filepath.Join("testdata", "deployment.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"createAppsV1NamespacedDeployment", "replaceAppsV1NamespacedDeployment"} {
		got, err := Walk(s, op, Object, body)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Unknown) != 0 || len(got.IllTyped) != 0 {
			t.Errorf("%s: unknown %q, ill-typed %q in a valid Deployment", op, got.Unknown, got.IllTyped)
		}
		// Every path the body sets is a path of the schema.
		inSchema := s.FieldPaths(op)
		for _, path := range got.Set {
			if _, found := slices.BinarySearch(inSchema, path); !found {
				t.Errorf("%s: set path %s is not among the schema's %d paths", op, path, len(inSchema))
			}
		}
		for _, path := range []string{
			"apiVersion", "metadata.labels{}", "spec.replicas", "spec.strategy.rollingUpdate.maxSurge",
			"spec.template.spec.containers[].image", "spec.template.spec.containers[].env[].valueFrom.secretKeyRef.key",
			"spec.template.spec.containers[].resources.limits{}", "spec.template.spec.containers[].args[]",
			"spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[].podAffinityTerm.labelSelector.matchLabels{}",
			"spec.template.spec.volumes[].configMap.defaultMode", "spec.template.spec.tolerations[].effect",
		} {
			if _, found := slices.BinarySearch(got.Set, path); !found {
				t.Errorf("%s: %s not set", op, path)
			}
		}
		// 100 distinct paths: every key of the body, and a [] or {} step for
		// every list and map, counted once however often they repeat.
		if len(got.Set) != 100 {
			t.Errorf("%s: %d paths set, want 100: %q", op, len(got.Set), got.Set)
		}
		if want := oracle(t, s, op, body); !cmp.Equal(want, got) {
			t.Errorf("%s: differs from encoding/json's reading: %s", op, cmp.Diff(want, got))
		}
	}
}

func TestDeployment(t *testing.T) {
	runCases(t, builtin(t), []walkCase{{
		name: "create with an unknown field and wrong values",
		op:   "createAppsV1NamespacedDeployment", kind: Object,
		body: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
			"spec":{"replicas":"3","paused":1,"minReadySeconds":2.5,"selector":{"matchLabels":{"app":"web"}},
			"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[
				{"name":"web","image":"nginx","imagePullPolicy":"Sometimes","imagePullPolicyy":"Always","ports":[{"containerPort":80,"protocol":"TCP"}]},
				{"name":"sidecar","image":"busybox","imagePullPolicy":"Never","resources":{"limits":{"cpu":0.5,"memory":"64Mi"}}}]}}},
			"status":{"replicas":1}}`,
		set: []string{
			"apiVersion", "kind", "metadata", "metadata.name", "spec", "spec.minReadySeconds", "spec.paused", "spec.replicas",
			"spec.selector", "spec.selector.matchLabels", "spec.selector.matchLabels{}",
			"spec.template", "spec.template.metadata", "spec.template.metadata.labels", "spec.template.metadata.labels{}",
			"spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
			"spec.template.spec.containers[].image", "spec.template.spec.containers[].imagePullPolicy",
			"spec.template.spec.containers[].name", "spec.template.spec.containers[].ports", "spec.template.spec.containers[].ports[]",
			"spec.template.spec.containers[].ports[].containerPort", "spec.template.spec.containers[].ports[].protocol",
			"spec.template.spec.containers[].resources", "spec.template.spec.containers[].resources.limits",
			"spec.template.spec.containers[].resources.limits{}", "status", "status.replicas",
		},
		unknown:  []string{"spec.template.spec.containers[].imagePullPolicyy"},
		illTyped: []string{"spec.minReadySeconds", "spec.paused", "spec.replicas", "spec.template.spec.containers[].imagePullPolicy"},
	}, {
		name: "server-side apply",
		op:   "patchAppsV1NamespacedDeployment", kind: ApplyPatch,
		body: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},
			"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}`,
		set: []string{
			"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace", "spec", "spec.replicas",
			"spec.template", "spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
			"spec.template.spec.containers[].image", "spec.template.spec.containers[].name",
		},
	}, {
		name: "strategic merge patch as kubectl apply writes it",
		op:   "patchAppsV1NamespacedDeployment", kind: StrategicMergePatch,
		body: `{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"},
				"$deleteFromPrimitiveList/finalizers":["example.com/old"]},
			"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null},
				"template":{"spec":{"$setElementOrder/containers":[{"name":"web"},{"name":"metrics"}],
					"containers":[{"name":"web","image":"nginx:1.28"},{"$patch":"delete","name":"old"}],
					"tolerations":[{"$patch":"replace"}],
					"nodeSelector":{"$patch":"replace","disk":"ssd"}}}}}`,
		set: []string{
			"metadata", "metadata.annotations", "metadata.annotations{}", "metadata.finalizers", "metadata.finalizers[]",
			"spec", "spec.strategy", "spec.strategy.rollingUpdate", "spec.strategy.type",
			"spec.template", "spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
			"spec.template.spec.containers[].image", "spec.template.spec.containers[].name",
			"spec.template.spec.nodeSelector", "spec.template.spec.nodeSelector{}",
			"spec.template.spec.tolerations", "spec.template.spec.tolerations[]",
		},
	}, {
		name: "strategic merge patch with bad directives",
		op:   "patchAppsV1NamespacedDeployment", kind: StrategicMergePatch,
		body: `{"$foo":1,"spec":{"$patch":"remove","strategy":{"$retainKeys":["type","color"]},
			"template":{"spec":{"$setElementOrder/sidecars":[],"$setElementOrder/hostname":["a"],
				"$deleteFromPrimitiveList/containers":[1],"nodeSelector":{"$patch":7}}}}}`,
		set: []string{
			"spec", "spec.strategy", "spec.template", "spec.template.spec", "spec.template.spec.containers",
			"spec.template.spec.containers[]", "spec.template.spec.hostname", "spec.template.spec.nodeSelector",
		},
		unknown: []string{"$foo", "spec.strategy.color", "spec.template.spec.sidecars"},
		illTyped: []string{"spec.$patch", "spec.template.spec.containers[]", "spec.template.spec.hostname",
			"spec.template.spec.nodeSelector.$patch"},
	}, {
		name: "merge patch keys starting with $ are fields",
		op:   "patchAppsV1NamespacedDeployment", kind: MergePatch,
		body: `{"spec":{"$patch":"replace","replicas":null}}`,
		set:  []string{"spec", "spec.replicas"}, unknown: []string{"spec.$patch"},
	}, {
		name: "scale subresource merge patch, as kubectl scale sends it",
		op:   "patchAppsV1NamespacedDeploymentScale", kind: MergePatch,
		body: `{"spec":{"replicas":5}}`,
		set:  []string{"spec", "spec.replicas"},
	}, {
		name: "JSON patch",
		op:   "patchAppsV1NamespacedDeployment", kind: JSONPatch,
		body: `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.29"},
			{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"log","image":"busybox","stdin":"yes"}},
			{"op":"test","path":"/spec/replicas","value":3},
			{"op":"remove","path":"/spec/template/spec/containers/1/env/0"},
			{"op":"add","path":"/spec/template/spec/containers/first/image","value":"x"},
			{"op":"replace","path":"/spec/replicas/count","value":1}]`,
		set: []string{
			"spec", "spec.replicas", "spec.template", "spec.template.spec", "spec.template.spec.containers",
			"spec.template.spec.containers[]", "spec.template.spec.containers[].env", "spec.template.spec.containers[].env[]",
			"spec.template.spec.containers[].image", "spec.template.spec.containers[].name", "spec.template.spec.containers[].stdin",
		},
		unknown:  []string{"spec.replicas.count", "spec.template.spec.containers.first"},
		illTyped: []string{"spec.template.spec.containers[].stdin"},
	}, {
		name: "delete options",
		op:   "deleteAppsV1NamespacedDeployment", kind: Object,
		body: `{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground","preconditions":{"uid":"1"}}`,
		set:  []string{"apiVersion", "kind", "preconditions", "preconditions.uid", "propagationPolicy"},
	}})
}

func TestConfigMap(t *testing.T) {
	runCases(t, builtin(t), []walkCase{{
		name: "create",
		op:   "createCoreV1NamespacedConfigMap", kind: Object,
		body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web-config","labels":{"app":"web"}},
			"data":{"nginx.conf":"events {}"},"binaryData":{"logo.png":"iVBORw0KGgo="},"immutable":false}`,
		set: []string{"apiVersion", "binaryData", "binaryData{}", "data", "data{}", "immutable", "kind",
			"metadata", "metadata.labels", "metadata.labels{}", "metadata.name"},
	}, {
		name: "update with an unknown field and wrong types, as --validate=false lets through",
		op:   "replaceCoreV1NamespacedConfigMap", kind: Object,
		body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","resourceVersion":"12"},
			"data":{"a":1,"b":"x"},"immutable":"yes","color":"blue"}`,
		set:      []string{"apiVersion", "data", "data{}", "immutable", "kind", "metadata", "metadata.name", "metadata.resourceVersion"},
		unknown:  []string{"color"},
		illTyped: []string{"data{}", "immutable"},
	}, {
		name: "merge patch deleting with null",
		op:   "patchCoreV1NamespacedConfigMap", kind: MergePatch,
		body: `{"metadata":{"annotations":{"note":null}},"data":{"a":"2","b":null},"immutable":null}`,
		set:  []string{"data", "data{}", "immutable", "metadata", "metadata.annotations", "metadata.annotations{}"},
	}, {
		name: "strategic merge patch",
		op:   "patchCoreV1NamespacedConfigMap", kind: StrategicMergePatch,
		body: `{"metadata":{"labels":{"$patch":"replace","app":"web"},"$setElementOrder/finalizers":["a"]},"data":{"$patch":"delete"}}`,
		set:  []string{"data", "metadata", "metadata.finalizers", "metadata.labels", "metadata.labels{}"},
	}, {
		name: "JSON patch of every op",
		op:   "patchCoreV1NamespacedConfigMap", kind: JSONPatch,
		body: `[{"op":"add","path":"/data/new~1key","value":"v"},
			{"op":"replace","path":"/metadata/labels","value":{"app":"web","tier":3}},
			{"op":"remove","path":"/metadata/annotations/note"},
			{"op":"test","path":"/immutable","value":false},
			{"op":"move","from":"/data/old","path":"/binaryData/old"},
			{"op":"copy","from":"/metadata/name","path":"/metadata/generateName"},
			{"op":"add","path":"/metadata/finalizers/-","value":"example.com/x"},
			{"op":"add","path":"/spec/x","value":1},
			{"op":"replace","path":"/metadata/managedFields/0/fieldsV1/f:data","value":{}}]`,
		set: []string{"binaryData", "binaryData{}", "data", "data{}", "immutable", "metadata",
			"metadata.annotations", "metadata.annotations{}", "metadata.finalizers", "metadata.finalizers[]",
			"metadata.generateName", "metadata.labels", "metadata.labels{}", "metadata.managedFields",
			"metadata.managedFields[]", "metadata.managedFields[].fieldsV1", "metadata.name"},
		unknown:  []string{"spec"},
		illTyped: []string{"metadata.labels{}"},
	}, {
		name: "JSON patch replacing the whole object, with members in any order",
		op:   "patchCoreV1NamespacedConfigMap", kind: JSONPatch,
		body: `[{"value":{"data":{"a":"b"}},"path":"","op":"replace","comment":"ignored"}]`,
		set:  []string{"data", "data{}"},
	}, {
		name: "escaped keys and strings",
		op:   "createCoreV1NamespacedConfigMap", kind: Object,
		body:    `{"meta\u0064ata":{"name":"\u0063","labels":{"\"q\"":"\ud83d\ude00"}},"dat\u0061":{},"\u00e9":1}`,
		set:     []string{"data", "metadata", "metadata.labels", "metadata.labels{}", "metadata.name"},
		unknown: []string{"é"},
	}, {
		name: "empty object",
		op:   "createCoreV1NamespacedConfigMap", kind: Object,
		body: " {} ",
	}})
}

func TestCustomResource(t *testing.T) {
	s := gadgets(t)
	for _, op := range []string{"createExampleComV1NamespacedGadget", "patchExampleComV1NamespacedGadget", "replaceExampleComV1NamespacedGadgetStatus"} {
		if _, ok := s.Body(op); !ok {
			t.Fatalf("no body schema for %s; have %v", op, slices.Sorted(func(yield func(string) bool) {
				for id := range s.Bodies {
					if !yield(id) {
						return
					}
				}
			}))
		}
	}
	runCases(t, s, []walkCase{{
		name: "create",
		op:   "createExampleComV1NamespacedGadget", kind: Object,
		body: `{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g1","labels":{"a":"b"}},
			"spec":{"size":"medium","replicas":2,"ratio":0.5,"enabled":true,"port":"http","tags":["a","b"],
				"parts":[{"name":"wheel","count":4}],"labels":{"x":"y"},"extra":{"anything":{"deep":[1,2]},"more":null}}}`,
		set: []string{"apiVersion", "kind", "metadata", "metadata.labels", "metadata.labels{}", "metadata.name",
			"spec", "spec.enabled", "spec.extra", "spec.extra.anything", "spec.extra.more", "spec.labels", "spec.labels{}",
			"spec.parts", "spec.parts[]", "spec.parts[].count", "spec.parts[].name", "spec.port", "spec.ratio",
			"spec.replicas", "spec.size", "spec.tags", "spec.tags[]"},
	}, {
		name: "create with values that do not fit",
		op:   "createExampleComV1NamespacedGadget", kind: Object,
		body: `{"spec":{"size":"huge","replicas":1.5,"port":1.5,"ratio":"x","enabled":"true","tags":"a",
			"parts":[{"name":"p","count":"4"}],"labels":{"x":1},"colour":"red"},"status":{"phase":"Ready"}}`,
		set: []string{"spec", "spec.enabled", "spec.labels", "spec.labels{}", "spec.parts", "spec.parts[]",
			"spec.parts[].count", "spec.parts[].name", "spec.port", "spec.ratio", "spec.replicas", "spec.size", "spec.tags",
			"status", "status.phase"},
		unknown: []string{"spec.colour"},
		illTyped: []string{"spec.enabled", "spec.labels{}", "spec.parts[].count", "spec.port", "spec.ratio",
			"spec.replicas", "spec.size", "spec.tags"},
	}, {
		name: "merge patch",
		op:   "patchExampleComV1NamespacedGadget", kind: MergePatch,
		body: `{"spec":{"size":"large","parts":null,"extra":{"x":null}}}`,
		set:  []string{"spec", "spec.extra", "spec.extra.x", "spec.parts", "spec.size"},
	}, {
		name: "apply",
		op:   "patchExampleComV1NamespacedGadget", kind: ApplyPatch,
		body: `{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g1"},"spec":{"parts":[{"name":"wheel","count":3}]}}`,
		set: []string{"apiVersion", "kind", "metadata", "metadata.name", "spec", "spec.parts", "spec.parts[]",
			"spec.parts[].count", "spec.parts[].name"},
	}, {
		name: "JSON patch",
		op:   "patchExampleComV1NamespacedGadget", kind: JSONPatch,
		body: `[{"op":"replace","path":"/spec/parts/0/count","value":5},{"op":"add","path":"/spec/extra/a/b","value":1},
			{"op":"add","path":"/spec/tags/x","value":"t"},{"op":"add","path":"/spec/size","value":"tiny"}]`,
		set:      []string{"spec", "spec.extra", "spec.extra.a", "spec.parts", "spec.parts[]", "spec.parts[].count", "spec.size", "spec.tags"},
		unknown:  []string{"spec.tags.x"},
		illTyped: []string{"spec.size"},
	}, {
		name: "status",
		op:   "replaceExampleComV1NamespacedGadgetStatus", kind: Object,
		body: `{"apiVersion":"example.com/v1","kind":"Gadget","metadata":{"name":"g1"},"status":{"phase":"Ready"}}`,
		set:  []string{"apiVersion", "kind", "metadata", "metadata.name", "status", "status.phase"},
	}})
}

func TestMalformed(t *testing.T) {
	s := builtin(t)
	w := NewWalker(s)
	const op = "patchCoreV1NamespacedConfigMap"
	objects := []string{
		"", " ", "{", "}", `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1} x`, `{"a":1}{}`, `[]`, `"s"`, `1`, `null`,
		"{\"a\":\"\x01\"}", `{"a":"\q"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":"open}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`,
		`{"a":1e}`, `{"a":.5}`, `{"a":+1}`, `{"a":tru}`, `{"a":nul}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"data":{"k":}}`,
		`{"metadata":{"labels":{"a":"b",}}}`, `{"$patch":}`, `{"$retainKeys":[1,}`, `{"a":1}` + "\x00",
		strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
	}
	for _, kind := range []BodyKind{Object, MergePatch, StrategicMergePatch, ApplyPatch} {
		for _, body := range objects {
			want := ErrMalformed
			if kind == ApplyPatch && body == "}" {
				want = ErrNotJSON // neither JSON nor an object: read as YAML
			}
			if r, err := w.Walk(op, kind, []byte(body)); !errors.Is(err, want) {
				t.Errorf("%s %.40q: %+v, %v; want %v", kind, body, r, err, want)
			}
		}
	}
	for _, body := range []string{
		"", `{}`, `[1]`, `[{"op":"add"}`, `[{"path":"/a"}]`, `[{"op":"add","value":1}]`, `[{"op":"add","path":"/data"}]`,
		`[{"op":"frob","path":"/a"}]`, `[{"op":"move","path":"/a"}]`, `[{"op":"remove","path":"a"}]`, `[{"op":"remove","path":"/a~2"}]`,
		`[{"op":"remove","path":"/a~"}]`, `[{"op":"copy","from":"x","path":"/a"}]`, `[{"op":1,"path":"/a"}]`, `[{"op":"add","path":1,"value":1}]`,
		`[{"op":"add","path":"/data","value":}]`, `[]x`, `[{"op":"remove","path":"/a"},]`,
		strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	} {
		if r, err := w.Walk(op, JSONPatch, []byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("json-patch %.40q: %+v, %v; want ErrMalformed", body, r, err)
		}
	}
	// The walker is still good after errors.
	r, err := w.Walk(op, MergePatch, []byte(`{"data":{"a":"b"}}`))
	if err != nil || !slices.Equal(r.Set, []string{"data", "data{}"}) {
		t.Errorf("after errors: %+v, %v", r, err)
	}
	if _, err := w.Walk("readCoreV1NamespacedConfigMap", Object, []byte(`{}`)); !errors.Is(err, ErrNoSchema) {
		t.Errorf("operation without a body: %v, want ErrNoSchema", err)
	}
	if _, err := w.WalkType(int32(len(s.Types)), Object, []byte(`{}`)); !errors.Is(err, ErrNoSchema) {
		t.Errorf("type out of range: %v, want ErrNoSchema", err)
	}
	for _, yaml := range []string{"metadata:\n  name: x\n", "  apiVersion: v1"} {
		if _, err := w.Walk(op, ApplyPatch, []byte(yaml)); !errors.Is(err, ErrNotJSON) {
			t.Errorf("YAML apply patch %q: %v, want ErrNotJSON", yaml, err)
		}
	}
	if _, err := w.Walk(op, BodyKind(99), []byte(`{}`)); err == nil {
		t.Error("unknown body kind accepted")
	}
}

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		method, contentType string
		kind                BodyKind
		ok                  bool
	}{
		{"POST", "application/json", Object, true},
		{"PUT", "application/json; charset=utf-8", Object, true},
		{"POST", "", Object, true},
		{"DELETE", "application/json", Object, true},
		{"POST", "application/vnd.kubernetes.protobuf", Protobuf, true},
		{"put", "application/vnd.kubernetes.protobuf", Protobuf, true},
		{"DELETE", "application/vnd.kubernetes.protobuf", 0, false},
		{"PATCH", "application/vnd.kubernetes.protobuf", 0, false},
		{"PUT", "application/yaml", 0, false},
		{"PATCH", "application/json-patch+json", JSONPatch, true},
		{"patch", "application/merge-patch+json", MergePatch, true},
		{"PATCH", "application/strategic-merge-patch+json", StrategicMergePatch, true},
		{"PATCH", "application/apply-patch+yaml", ApplyPatch, true},
		{"PATCH", "application/apply-patch+cbor", 0, false},
		{"PATCH", "application/json", 0, false},
	} {
		kind, ok := KindOf(c.method, c.contentType)
		if kind != c.kind || ok != c.ok {
			t.Errorf("KindOf(%s, %q) = %s, %v; want %s, %v", c.method, c.contentType, kind, ok, c.kind, c.ok)
		}
	}
}
