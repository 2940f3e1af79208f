package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os/exec"
	"slices"
	"strings"
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

// bodyStep is one kubectl command of TestAuditBodiesMatchProxy: its exit
// status and the field sets of its bodies, as the proxy reports them.
type bodyStep struct {
	name     string
	wantExit int
	// unlogged: the API server answers before it logs the body (a create
	// it cannot decode, a patch type it does not take), so only the proxy
	// sees it.
	unlogged bool
	args     []string
	want     map[string]wantFields
}

// bodyRun is what the proxy recorded of some steps, per operation: the
// field sets of every body, and those of the bodies the audit log has too.
type bodyRun struct {
	steps        []bodyStep
	proxy        map[string]*fieldSets
	logged       map[string]*fieldSets
	loggedBodies map[string]int64
}

// recordSteps runs each step through kubectl snoop record --bodies
// --release release, checks its field sets against what it sent, and
// returns what the proxy recorded over them all.
func recordSteps(t *testing.T, kubeconfig, ns, release string, steps []bodyStep) *bodyRun {
	t.Helper()
	run := &bodyRun{steps: steps, proxy: map[string]*fieldSets{}, logged: map[string]*fieldSets{}, loggedBodies: map[string]int64{}}
	sent := map[string]*fieldSets{}
	for _, s := range steps {
		got := recordBodies(t, kubeconfig, ns, []string{"--release", release}, s.wantExit, s.args...)
		t.Run(s.name, func(t *testing.T) { checkFields(t, got, s.want) })
		for id, fr := range got {
			addFields(run.proxy, id, fieldPaths(fr.Set), fieldPaths(fr.Unknown), fieldPaths(fr.IllTyped))
			if !s.unlogged {
				addFields(run.logged, id, fieldPaths(fr.Set), fieldPaths(fr.Unknown), fieldPaths(fr.IllTyped))
				run.loggedBodies[id] += fr.Bodies
			}
		}
		for id, w := range s.want {
			addFields(sent, id, w.set, w.unknown, w.illTyped)
		}
	}
	for id, p := range run.proxy {
		if !equalSets(p, sent[id]) {
			t.Errorf("%s: the proxy's field sets %+v differ from what was sent %+v", id, p, sent[id])
		}
	}
	return run
}

func addFields(m map[string]*fieldSets, id string, set, unknown, illTyped []string) {
	if m[id] == nil {
		m[id] = &fieldSets{}
	}
	m[id].add(set, unknown, illTyped)
}

// TestAuditBodiesMatchProxy runs kubectl's ways of writing objects
// (create, client- and server-side apply, patch of each type, replace, an
// unknown field with --validate=false, a wrong type) on ConfigMaps,
// Deployments and a custom resource through kubectl snoop record --bodies
// against an API server writing an audit log at RequestResponse level,
// then reads the log with kubectl snoop coverage --audit-log, and compares
// the field sets per operation. Built-in objects are measured against the
// embedded 1.37 release on both paths, the custom resource against the
// live cluster's API (--release cluster) on both paths; the log is read
// against the live API a second time, where the built-in operations must
// come out as against the embedded release (the cluster publishes the same
// schemas).
//
// The two paths see the same bytes only for patches: the API server logs a
// patch's body as sent, but a create's or update's requestObject is the
// object it decoded, encoded again (defaults filled in, unknown fields
// dropped: a custom resource's by pruning to its structural schema), and a
// body it cannot decode (a wrong type in a built-in object) is not logged at
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
	steps := []bodyStep{
		{name: "create ConfigMap", args: []string{"create", "-f", configMap("created", "  k: v\n")},
			want: map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths}}},
		{name: "create Deployment", args: []string{"create", "-f", writeManifest(t, "web.yaml", deploymentManifest)},
			want: map[string]wantFields{"createAppsV1NamespacedDeployment": {bodies: 1, set: []string{
				"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace",
				"spec", "spec.replicas", "spec.selector", "spec.selector.matchLabels", "spec.selector.matchLabels{}",
				"spec.template", "spec.template.metadata", "spec.template.metadata.labels", "spec.template.metadata.labels{}",
				"spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
				"spec.template.spec.containers[].name", "spec.template.spec.containers[].image",
			}}}},
		{name: "apply client-side", args: []string{"apply", "-f", configMap("applied", "  k: v\n")},
			want: map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths),
				"metadata.annotations", "metadata.annotations{}")}}},
		{name: "apply client-side again", args: []string{"apply", "-f", configMap("applied", "  k: v2\n  m: x\n")},
			want: map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.annotations", "metadata.annotations{}"}}}},
		{name: "apply server-side", args: []string{"apply", "--server-side", "-f", configMap("server-applied", "  k: v\n")},
			want: map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths}}},
		{name: "patch json", args: []string{"patch", "configmap", "created", "--type=json",
			"-p", `[{"op":"replace","path":"/data/k","value":"v3"},{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`},
			want: map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.labels", "metadata.labels{}"}}}},
		{name: "patch merge", args: []string{"patch", "configmap", "created", "--type=merge",
			"-p", `{"data":{"k":null,"m":"x"},"metadata":{"annotations":{"a":"b"}}}`},
			want: map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
				"data", "data{}", "metadata", "metadata.annotations", "metadata.annotations{}"}}}},
		{name: "patch strategic", args: []string{"patch", "deployment", "web", "--type=strategic",
			"-p", `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}`},
			want: map[string]wantFields{"patchAppsV1NamespacedDeployment": {bodies: 1, set: []string{
				"spec", "spec.template", "spec.template.spec", "spec.template.spec.containers", "spec.template.spec.containers[]",
				"spec.template.spec.containers[].name", "spec.template.spec.containers[].image"}}}},
		{name: "replace", args: []string{"replace", "-f", configMap("created", "  k: v4\n")},
			want: map[string]wantFields{"replaceCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths), "metadata.resourceVersion")}}},
		{name: "unknown field", args: []string{"create", "--validate=false", "-f", writeManifest(t, "unknown.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unknown\n  colour: blue\ndata:\n  k: v\nextra: 1\n")},
			want: map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: configMapPaths, unknown: []string{"extra", "metadata.colour"}}}},
		// The API server cannot decode a built-in object with a value of
		// the wrong type: it logs no requestObject.
		{name: "wrong type", wantExit: 1, unlogged: true, args: []string{"create", "--validate=false", "-f", writeManifest(t, "wrong.yaml",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wrong\ndata:\n  k: v\nimmutable: \"yes\"\n")},
			want: map[string]wantFields{"createCoreV1NamespacedConfigMap": {bodies: 1, set: append(slices.Clone(configMapPaths), "immutable"),
				illTyped: []string{"immutable"}}}},
		// The same two in a patch, which the audit log keeps as sent (kubectl
		// patch asks for no field validation: the API server warns of the
		// unknown fields).
		{name: "patch unknown field", args: []string{"patch", "configmap", "created", "--type=merge",
			"-p", `{"metadata":{"colour":"blue"},"extra":1}`},
			want: map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{"metadata"}, unknown: []string{"extra", "metadata.colour"}}}},
		{name: "patch wrong type", wantExit: 1, args: []string{"patch", "configmap", "created", "--type=merge", "-p", `{"immutable":"yes"}`},
			want: map[string]wantFields{"patchCoreV1NamespacedConfigMap": {bodies: 1, set: []string{"immutable"}, illTyped: []string{"immutable"}}}},
	}
	builtIn := recordSteps(t, cp.Kubeconfig, ns, "1.37", steps)

	// The custom resource, measured against the live cluster's API once
	// the API server publishes the CRD's schema.
	if out, err := exec.Command(kubectl, "--kubeconfig", cp.Kubeconfig, "create", "-f", writeManifest(t, "gizmos.yaml", gizmoCRD)).CombinedOutput(); err != nil {
		t.Fatalf("create CRD: %v\n%s", err, out)
	}
	waitForClusterSchema(t, cp.Config, "patchExampleComV1NamespacedGizmo", "spec.parts[].count")
	custom := recordSteps(t, cp.Kubeconfig, ns, "cluster", gizmoSteps(t))

	cp.WaitForAuditLog(t)
	// Against the embedded release, the custom resource's requests are
	// unknown: only the built-in operations have bodies.
	checkAuditBodies(t, auditCoverage(t, cp.AuditLog, ns, "--release", "1.37"), builtIn)
	checkAuditBodies(t, auditCoverage(t, cp.AuditLog, ns, "--release", "cluster", "--kubeconfig", cp.Kubeconfig), builtIn, custom)
}

// checkAuditBodies compares the field coverage of an audit log with what
// the proxy recorded in runs: patches exactly, creates and updates as
// what was sent minus the unknown fields, plus the defaults auditDefaults
// lists.
func checkAuditBodies(t *testing.T, auditReport *coverage.Report, runs ...*bodyRun) {
	t.Helper()
	logged, loggedBodies := map[string]*fieldSets{}, map[string]int64{}
	decoded := map[string]*fieldSets{} // what the creates and updates the API server logged sent
	for _, run := range runs {
		for id, f := range run.logged {
			addFields(logged, id, f.set, f.unknown, f.illTyped)
			loggedBodies[id] += run.loggedBodies[id]
		}
		for _, s := range run.steps {
			for id, w := range s.want {
				if !s.unlogged {
					addFields(decoded, id, w.set, nil, w.illTyped)
				}
			}
		}
	}
	audit := map[string]*fieldSets{}
	for _, op := range auditReport.Operations {
		if op.Fields != nil && op.Fields.Bodies > 0 {
			// One body per request, though the log has each request's stages.
			if op.Fields.Bodies != loggedBodies[op.ID] || op.Fields.Malformed != 0 {
				t.Errorf("%s: %d bodies (%d malformed) in the audit log, want %d", op.ID, op.Fields.Bodies, op.Fields.Malformed, loggedBodies[op.ID])
			}
			addFields(audit, op.ID, fieldPaths(op.Fields.Set), fieldPaths(op.Fields.Unknown), fieldPaths(op.Fields.IllTyped))
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(audit)), slices.Sorted(maps.Keys(logged))) {
		t.Fatalf("operations with bodies in %s: audit log %v, proxy %v", auditReport.Summary.Release, slices.Sorted(maps.Keys(audit)), slices.Sorted(maps.Keys(logged)))
	}
	for _, id := range slices.Sorted(maps.Keys(audit)) {
		if strings.HasPrefix(id, "patch") {
			if !equalSets(audit[id], logged[id]) {
				t.Errorf("%s in %s: the audit log's field sets\n%+v\ndiffer from the proxy's\n%+v", id, auditReport.Summary.Release, audit[id], logged[id])
			}
			continue
		}
		defaults, ok := auditDefaults[id]
		if !ok {
			t.Errorf("%s: no defaults listed for it", id)
			continue
		}
		want := &fieldSets{}
		want.add(defaults, nil, nil)
		want.add(decoded[id].set, nil, decoded[id].illTyped)
		if !equalSets(audit[id], want) {
			t.Errorf("%s in %s: the audit log's field sets\n%+v\nwant what was sent and the defaults\n%+v", id, auditReport.Summary.Release, audit[id], want)
		}
	}
}

// auditDefaults are the paths the API server's requestObject of a create or
// update sets beyond the body sent: the defaults and empty objects it
// encodes back (none for a ConfigMap, nor for the Gizmo, whose schema has no
// defaults; a Deployment's, as Kubernetes 1.37 defaults them).
var auditDefaults = map[string][]string{
	"createExampleComV1NamespacedGizmo":  {},
	"replaceExampleComV1NamespacedGizmo": {},
	"createCoreV1NamespacedConfigMap":    {},
	"replaceCoreV1NamespacedConfigMap":   {},
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
// --audit-log and flags, for the objects of namespace ns.
func auditCoverage(t *testing.T, path, ns string, flags ...string) *coverage.Report {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"coverage", "--audit-log", path, "--object-namespace", ns, "-o", "json"}, flags...))
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
