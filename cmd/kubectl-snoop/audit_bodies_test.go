package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os/exec"
	"slices"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// auditBodiesNamespace is where TestAuditBodiesMatchProxy writes, logged at
// RequestResponse level with every stage (so that the reader must count
// each request's body once although its requestObject comes twice).
const auditBodiesNamespace = "audit-bodies"

const auditBodiesPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: []
rules:
- level: RequestResponse
  namespaces: ["` + auditBodiesNamespace + `"]
- level: None
`

// fieldSets are the paths an operation's bodies set, used unknown and
// gave ill-typed values, over a whole run.
type fieldSets struct{ set, unknown, illTyped []string }

func (f *fieldSets) add(set, unknown, illTyped []string) {
	union := func(a, b []string) []string {
		return slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(a), b...))))
	}
	f.set, f.unknown, f.illTyped = union(f.set, set), union(f.unknown, unknown), union(f.illTyped, illTyped)
}

// TestAuditBodiesMatchProxy runs kubectl's ways of writing objects
// (create, client- and server-side apply, patch of each type, replace, an
// unknown field with --validate=false, a wrong type) through kubectl snoop
// record --bodies against an API server writing an audit log at
// RequestResponse level, then reads the log with kubectl snoop coverage
// --audit-log, and compares the field sets per operation.
//
// The two paths see the same bytes only for patches: the API server logs a
// patch's body as sent, but a create's or update's requestObject is the
// object it decoded, encoded again (defaults filled in, unknown fields
// dropped), and a body it cannot decode (a wrong type) is not logged at
// all. So patches must agree exactly with the proxy and with what the test
// sent, and creates and updates must cover what was sent minus the unknown
// fields, plus the API server's defaults, which the test lists.
func TestAuditBodiesMatchProxy(t *testing.T) {
	cp := testenv.StartForTest(t, testenv.WithAuditPolicy(auditBodiesPolicy))
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	ns := auditBodiesNamespace
	if out, err := exec.Command(kubectl, "--kubeconfig", cp.Kubeconfig, "create", "namespace", ns).CombinedOutput(); err != nil {
		t.Fatalf("create namespace: %v\n%s", err, out)
	}
	configMap := func(name, data string) string {
		return writeManifest(t, name+".yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\ndata:\n"+data)
	}
	steps := []struct {
		name     string
		wantExit int
		args     []string
		want     map[string]wantFields // what the test sent, as the proxy reports it
	}{
		{"create ConfigMap", 0, []string{"create", "-f", configMap("created", "  k: v\n")},
			map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths}}},
		{"create Deployment", 0, []string{"create", "-f", writeManifest(t, "web.yaml", deploymentManifest)},
			map[string]wantFields{"createAppsV1NamespacedDeployment": {bodies: 1, set: []string{
				"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace",
				"spec", "spec.replicas", "spec.selector", "spec.selector.matchLabels", "spec.selector.matchLabels{}",
				"spec.template", "spec.template.metadata", "spec.template.metadata.labels", "spec.template.metadata.labels{}",
				"spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
				"spec.template.spec.containers[].name", "spec.template.spec.containers[].image",
			}}}},
		{"apply client-side", 0, []string{"apply", "-f", configMap("applied", "  k: v\n")},
			map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths),
				"metadata.annotations", "metadata.annotations{}")}}},
		{"apply client-side again", 0, []string{"apply", "-f", configMap("applied", "  k: v2\n  m: x\n")},
			map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.annotations", "metadata.annotations{}"}}}},
		{"apply server-side", 0, []string{"apply", "--server-side", "-f", configMap("server-applied", "  k: v\n")},
			map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths}}},
		{"patch json", 0, []string{"patch", "configmap", "created", "--type=json",
			"-p", `[{"op":"replace","path":"/data/k","value":"v3"},{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`},
			map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.labels", "metadata.labels{}"}}}},
		{"patch merge", 0, []string{"patch", "configmap", "created", "--type=merge",
			"-p", `{"data":{"k":null,"m":"x"},"metadata":{"annotations":{"a":"b"}}}`},
			map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.annotations", "metadata.annotations{}"}}}},
		{"patch strategic", 0, []string{"patch", "deployment", "web", "--type=strategic",
			"-p", `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}`},
			map[string]wantFields{"patchAppsV1NamespacedDeployment": {bodies: 1, set: []string{
				"spec", "spec.template", "spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
				"spec.template.spec.containers[].name", "spec.template.spec.containers[].image"}}}},
		{"replace", 0, []string{"replace", "-f", configMap("created", "  k: v4\n")},
			map[string]wantFields{"replaceCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths), "metadata.resourceVersion")}}},
		{"unknown field", 0, []string{"create", "--validate=false", "-f", writeManifest(t, "unknown.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\n  colour: blue\ndata:\n  k: v\nextra: 1\n")},
			map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths, unknown: []string{"extra", "metadata.colour"}}}},
		{"wrong type", 1, []string{"create", "--validate=false", "-f", writeManifest(t, "wrong.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wrong\ndata:\n  k: v\nimmutable: \"yes\"\n")},
			map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths), "immutable"),
				illTyped: []string{"immutable"}}}},
		// The same two in a patch, which the audit log keeps as sent (kubectl
		// patch asks for no field validation: the API server warns of the
		// unknown fields).
		{"patch unknown field", 0, []string{"patch", "configmap", "created", "--type=merge",
			"-p", `{"metadata":{"colour":"blue"},"extra":1}`},
			map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{"metadata"}, unknown: []string{"extra", "metadata.colour"}}}},
		{"patch wrong type", 1, []string{"patch", "configmap", "created", "--type=merge", "-p", `{"immutable":"yes"}`},
			map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{"immutable"}, illTyped: []string{"immutable"}}}},
	}
	proxy := map[string]*fieldSets{}
	sent := map[string]*fieldSets{}
	proxyBodies := map[string]int64{}
	for _, s := range steps {
		got := recordBodies(t, cp.Kubeconfig, ns, nil, s.wantExit, s.args...)
		t.Run(s.name, func(t *testing.T) { checkFields(t, got, s.want) })
		for id, fr := range got {
			if proxy[id] == nil {
				proxy[id] = &fieldSets{}
			}
			proxy[id].add(fieldPaths(fr.Set), fieldPaths(fr.Unknown), fieldPaths(fr.IllTyped))
			proxyBodies[id] += fr.Bodies
		}
		for id, w := range s.want {
			if sent[id] == nil {
				sent[id] = &fieldSets{}
			}
			sent[id].add(w.set, w.unknown, w.illTyped)
		}
	}
	for id, p := range proxy {
		if !equalSets(p, sent[id]) {
			t.Errorf("%s: the proxy's field sets %+v differ from what was sent %+v", id, p, sent[id])
		}
	}

	cp.WaitForAuditLog(t)
	auditReport := auditCoverage(t, cp.AuditLog, ns)
	audit := map[string]*fieldSets{}
	// One body per request, though the log has each request's stages; the
	// create the API server could not decode has none.
	proxyBodies["createCoreV1NamespacedConfigMap"]--
	for _, op := range auditReport.Operations {
		if op.Fields != nil && op.Fields.Bodies > 0 {
			if op.Fields.Bodies != proxyBodies[op.ID] || op.Fields.Malformed != 0 {
				t.Errorf("%s: %d bodies (%d malformed) in the audit log, want %d", op.ID, op.Fields.Bodies, op.Fields.Malformed, proxyBodies[op.ID])
			}
			audit[op.ID] = &fieldSets{}
			audit[op.ID].add(fieldPaths(op.Fields.Set), fieldPaths(op.Fields.Unknown), fieldPaths(op.Fields.IllTyped))
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(audit)), slices.Sorted(maps.Keys(proxy))) {
		t.Fatalf("operations with bodies: audit log %v, proxy %v", slices.Sorted(maps.Keys(audit)), slices.Sorted(maps.Keys(proxy)))
	}
	for _, id := range []string{"patchCoreV1NamespacedConfigMap", "patchAppsV1NamespacedDeployment"} {
		if !equalSets(audit[id], proxy[id]) {
			t.Errorf("%s: the audit log's field sets\n%+v\ndiffer from the proxy's\n%+v", id, audit[id], proxy[id])
		}
	}
	// Creates and updates: what was sent, minus the unknown fields and the
	// body the API server could not decode, plus its defaults.
	for id, defaults := range auditDefaults {
		want := &fieldSets{}
		want.add(defaults, nil, nil)
		for _, s := range steps {
			if w, ok := s.want[id]; ok && s.wantExit == 0 {
				want.add(w.set, nil, nil)
			}
		}
		if !equalSets(audit[id], want) {
			t.Errorf("%s: the audit log's field sets\n%+v\nwant what was sent and the defaults\n%+v", id, audit[id], want)
		}
	}
}

// auditDefaults are the paths the API server's requestObject of a create or
// update sets beyond the body sent: the defaults and empty objects it
// encodes back (none for a ConfigMap; a Deployment's, as Kubernetes 1.37
// defaults them).
var auditDefaults = map[string][]string{
	"createCoreV1NamespacedConfigMap":  {},
	"replaceCoreV1NamespacedConfigMap": {},
	"createAppsV1NamespacedDeployment": {
		"spec.progressDeadlineSeconds", "spec.revisionHistoryLimit",
		"spec.strategy", "spec.strategy.rollingUpdate", "spec.strategy.rollingUpdate.maxSurge",
		"spec.strategy.rollingUpdate.maxUnavailable", "spec.strategy.type",
		"spec.template.spec.containers[].imagePullPolicy", "spec.template.spec.containers[].resources",
		"spec.template.spec.containers[].terminationMessagePath", "spec.template.spec.containers[].terminationMessagePolicy",
		"spec.template.spec.dnsPolicy", "spec.template.spec.restartPolicy", "spec.template.spec.schedulerName",
		"spec.template.spec.securityContext", "spec.template.spec.terminationGracePeriodSeconds",
		"status",
	},
}

func equalSets(a, b *fieldSets) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.set, b.set) && slices.Equal(a.unknown, b.unknown) && slices.Equal(a.illTyped, b.illTyped)
}

// auditCoverage reads the audit log at path with kubectl snoop coverage
// --audit-log, for the objects of namespace ns.
func auditCoverage(t *testing.T, path, ns string) *coverage.Report {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"coverage", "--audit-log", path, "--release", "1.37", "--object-namespace", ns, "-o", "json"})
	if err := root.Execute(); err != nil {
		t.Fatalf("coverage: %v\n%s", err, errOut.String())
	}
	var r coverage.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("coverage output: %v\n%s", err, out.String())
	}
	if r.Summary.Fields == nil || !r.Summary.Fields.Schemas {
		t.Errorf("audit coverage has no field coverage with schemas: %+v", r.Summary.Fields)
	}
	return &r
}
