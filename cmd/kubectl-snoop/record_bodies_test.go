package main

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// wantFields is what the bodies of one operation set, as a test wrote them.
type wantFields struct {
	bodies, malformed int64
	set               []string
	unknown, illTyped []string
}

// recordBodies runs kubectl through kubectl snoop record --bodies (and
// flags) and returns the field coverage of the operations that got bodies.
func recordBodies(t *testing.T, kubeconfig, namespace string, flags []string, wantExit int, kubectlArgs ...string) map[string]*coverage.FieldReport {
	t.Helper()
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "coverage.json")
	args := append([]string{"record", "--kubeconfig", kubeconfig, "--release", "1.37", "--bodies", "-o", "json", "--out", out}, flags...)
	args = append(append(args, "--", kubectl, "-n", namespace), kubectlArgs...)
	stderr, err := runRecord(t, args...)
	var exit exitError
	switch {
	case wantExit == 0 && err != nil:
		t.Fatalf("record %v: %v\n%s", kubectlArgs, err, stderr)
	case wantExit != 0 && (!errors.As(err, &exit) || exit.code != wantExit):
		t.Fatalf("record %v: %v, want kubectl's exit status %d", kubectlArgs, err, wantExit)
	}
	r := mustReadReport(t, out)
	if r.Summary.Fields == nil || !r.Summary.Fields.Schemas {
		t.Errorf("report summary has no field coverage with schemas: %+v", r.Summary.Fields)
	}
	got := map[string]*coverage.FieldReport{}
	for _, op := range r.Operations {
		if op.Fields != nil && op.Fields.Bodies > 0 {
			got[op.ID] = op.Fields
		}
	}
	return got
}

func fieldPaths(hits []coverage.FieldHit) []string {
	paths := make([]string, 0, len(hits))
	for _, h := range hits {
		paths = append(paths, h.Path)
	}
	return paths
}

func checkFields(t *testing.T, got map[string]*coverage.FieldReport, want map[string]wantFields) {
	t.Helper()
	for id, w := range want {
		fr := got[id]
		if fr == nil {
			t.Errorf("%s: no bodies recorded; recorded %v", id, slices.Sorted(maps.Keys(got)))
			continue
		}
		if fr.Bodies != w.bodies || fr.Malformed != w.malformed {
			t.Errorf("%s: %d bodies, %d malformed; want %d, %d", id, fr.Bodies, fr.Malformed, w.bodies, w.malformed)
		}
		for _, c := range []struct {
			what      string
			got, want []string
		}{
			{"set", fieldPaths(fr.Set), w.set},
			{"unknown", fieldPaths(fr.Unknown), w.unknown},
			{"ill-typed", fieldPaths(fr.IllTyped), w.illTyped},
		} {
			want := slices.Sorted(slices.Values(c.want))
			if !slices.Equal(c.got, want) {
				t.Errorf("%s: %s paths\n got %q\nwant %q", id, c.what, c.got, want)
			}
		}
		for _, h := range fr.Set {
			if h.NotInSchema {
				t.Errorf("%s: set path %s is not in the schema", id, h.Path)
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: bodies recorded, none expected: %+v", id, got[id])
		}
	}
}

func writeManifest(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const deploymentManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: nginx:1
`

// The paths every ConfigMap manifest of this test sets, with the namespace
// kubectl writes into every object it reads from a file (the one of -n).
var configMapPaths = []string{"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace", "data", "data{}"}

// TestRecordBodiesOfKubectl records what real kubectl sends for each way it
// writes objects and checks the field paths of every body against what the
// test gave kubectl.
func TestRecordBodiesOfKubectl(t *testing.T) {
	cp := sharedControlPlane.Get(t)
	kubeconfig := clientCertKubeconfig(t)
	namespace, err := cp.Namespace(t.Context(), "bodies", nil)
	if err != nil {
		t.Fatal(err)
	}
	configMap := func(name, data string) string {
		return writeManifest(t, name+".yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\ndata:\n"+data)
	}

	t.Run("create ConfigMap", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "create", "-f", configMap("created", "  k: v\n"))
		checkFields(t, got, map[string]wantFields{
			"createCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths},
		})
	})
	t.Run("create Deployment", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "create", "-f", writeManifest(t, "web.yaml", deploymentManifest))
		checkFields(t, got, map[string]wantFields{
			"createAppsV1NamespacedDeployment": {bodies: 1, set: []string{
				"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace",
				"spec", "spec.replicas", "spec.selector", "spec.selector.matchLabels", "spec.selector.matchLabels{}",
				"spec.template", "spec.template.metadata", "spec.template.metadata.labels", "spec.template.metadata.labels{}",
				"spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
				"spec.template.spec.containers[].name", "spec.template.spec.containers[].image",
			}},
		})
	})
	// Client-side apply creates with the last applied configuration in an
	// annotation, then patches (strategic merge) what changed and the
	// annotation.
	t.Run("apply client-side", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "apply", "-f", configMap("applied", "  k: v\n"))
		checkFields(t, got, map[string]wantFields{
			"createCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths),
				"metadata.annotations", "metadata.annotations{}")},
		})
		got = recordBodies(t, kubeconfig, namespace, nil, 0, "apply", "-f", configMap("applied", "  k: v2\n  m: x\n"))
		checkFields(t, got, map[string]wantFields{
			"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.annotations", "metadata.annotations{}",
			}},
		})
	})
	t.Run("apply server-side", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "apply", "--server-side", "-f", configMap("server-applied", "  k: v\n"))
		checkFields(t, got, map[string]wantFields{
			"patchCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths},
		})
	})
	t.Run("patch json", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "patch", "configmap", "created", "--type=json",
			"-p", `[{"op":"replace","path":"/data/k","value":"v3"},{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`)
		checkFields(t, got, map[string]wantFields{
			"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.labels", "metadata.labels{}",
			}},
		})
	})
	t.Run("patch merge", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "patch", "configmap", "created", "--type=merge",
			"-p", `{"data":{"k":null,"m":"x"},"metadata":{"annotations":{"a":"b"}}}`)
		checkFields(t, got, map[string]wantFields{
			"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.annotations", "metadata.annotations{}",
			}},
		})
	})
	t.Run("patch strategic", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "patch", "deployment", "web", "--type=strategic",
			"-p", `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}`)
		checkFields(t, got, map[string]wantFields{
			"patchAppsV1NamespacedDeployment": {bodies: 1, set: []string{
				"spec", "spec.template", "spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
				"spec.template.spec.containers[].name", "spec.template.spec.containers[].image",
			}},
		})
	})
	// kubectl replace reads the live object first and sends its
	// resourceVersion with the manifest.
	t.Run("replace", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "replace", "-f", configMap("created", "  k: v4\n"))
		checkFields(t, got, map[string]wantFields{
			"replaceCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths), "metadata.resourceVersion")},
		})
	})
	// kubectl --validate=false sends what the manifest says and asks the
	// API server to ignore unknown fields, which it then drops.
	t.Run("unknown field", func(t *testing.T) {
		manifest := writeManifest(t, "unknown.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\n  colour: blue\ndata:\n  k: v\nextra: 1\n")
		got := recordBodies(t, kubeconfig, namespace, nil, 0, "create", "--validate=false", "-f", manifest)
		checkFields(t, got, map[string]wantFields{
			"createCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths, unknown: []string{"extra", "metadata.colour"}},
		})
	})
	// A value of the wrong type goes out too; the API server refuses it.
	t.Run("wrong type", func(t *testing.T) {
		manifest := writeManifest(t, "wrong.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wrong\ndata:\n  k: v\nimmutable: \"yes\"\n")
		got := recordBodies(t, kubeconfig, namespace, nil, 1, "create", "--validate=false", "-f", manifest)
		checkFields(t, got, map[string]wantFields{
			"createCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths), "immutable"),
				illTyped: []string{"immutable"}},
		})
	}) // A body longer than --max-body-bytes is not read: it counts as
	// malformed, and sets nothing.
	t.Run("body over the cap", func(t *testing.T) {
		got := recordBodies(t, kubeconfig, namespace, []string{"--max-body-bytes", "64"}, 0,
			"create", "-f", writeManifest(t, "big.yaml", strings.Replace(deploymentManifest, "name: web", "name: big", 1)))
		checkFields(t, got, map[string]wantFields{
			"createAppsV1NamespacedDeployment": {bodies: 1, malformed: 1},
		})
	})
}
