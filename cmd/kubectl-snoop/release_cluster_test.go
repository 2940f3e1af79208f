package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// snoopSessionsPath is the collection of the project's own custom
// resource, which the shared control plane serves and no embedded release
// knows.
const snoopSessionsPath = "/apis/snoop.apisnoop.dev/v1alpha1/namespaces/{namespace}/snoopsessions"

// createSnoopSession is the create operation of snoopSessionsPath; the
// API server publishes it a while after the control plane starts.
const createSnoopSession = "createSnoopApisnoopDevV1alpha1NamespacedSnoopSession"

// snoopSessionAuditLog is one list and one create of SnoopSessions, the
// create logged at Request level with a body setting a known and an
// unknown spec field.
const snoopSessionAuditLog = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"1","stage":"ResponseComplete","requestURI":"/apis/snoop.apisnoop.dev/v1alpha1/namespaces/default/snoopsessions","verb":"list","user":{"username":"admin"},"userAgent":"kubectl/v1.37.2","objectRef":{"resource":"snoopsessions","namespace":"default","apiGroup":"snoop.apisnoop.dev","apiVersion":"v1alpha1"},"responseStatus":{"code":200}}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"2","stage":"ResponseComplete","requestURI":"/apis/snoop.apisnoop.dev/v1alpha1/namespaces/default/snoopsessions","verb":"create","user":{"username":"admin"},"userAgent":"kubectl/v1.37.2","objectRef":{"resource":"snoopsessions","namespace":"default","apiGroup":"snoop.apisnoop.dev","apiVersion":"v1alpha1"},"responseStatus":{"code":201},"requestObject":{"apiVersion":"snoop.apisnoop.dev/v1alpha1","kind":"SnoopSession","metadata":{"name":"s"},"spec":{"kubernetesRelease":"cluster","bogus":1}}}
`

// findOperation returns the report's operation of method on path.
func findOperation(r *coverage.Report, method, path string) (coverage.OperationReport, bool) {
	i := slices.IndexFunc(r.Operations, func(op coverage.OperationReport) bool { return op.Method == method && op.Path == path })
	if i < 0 {
		return coverage.OperationReport{}, false
	}
	return r.Operations[i], true
}

// TestCoverageReleaseCluster reads an audit log of custom resource requests
// against the live cluster's API: with --release cluster they hit the
// CRD's operations and the create's body is read against its schema;
// against an embedded release they are unknown.
func TestCoverageReleaseCluster(t *testing.T) {
	cp := sharedControlPlane.Get(t)
	kubeconfig := cp.Kubeconfig
	waitForClusterSchema(t, cp.Config, createSnoopSession, "spec.kubernetesRelease")
	log := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(log, []byte(snoopSessionAuditLog), 0o600); err != nil {
		t.Fatal(err)
	}
	var cluster coverage.Report
	if err := json.Unmarshal([]byte(runCommand(t, "coverage", "--audit-log", log, "--release", "cluster", "--kubeconfig", kubeconfig, "-o", "json")), &cluster); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cluster.Summary.Release, "cluster v1.37.") || cluster.Summary.Requests != 2 || cluster.Summary.UnknownRequests != 0 {
		t.Errorf("summary %+v, want 2 requests of the cluster's 1.37 API, none unknown", cluster.Summary)
	}
	if list, ok := findOperation(&cluster, "GET", snoopSessionsPath); !ok || list.Hits != 1 {
		t.Errorf("list of SnoopSessions: %+v, %v; want 1 hit", list, ok)
	}
	create, ok := findOperation(&cluster, "POST", snoopSessionsPath)
	if !ok || create.Hits != 1 || create.Fields == nil || create.Fields.Bodies != 1 {
		t.Fatalf("create of SnoopSessions: %+v, %v; want 1 hit with 1 body", create, ok)
	}
	set, unknown := fieldPaths(create.Fields.Set), fieldPaths(create.Fields.Unknown)
	if want := []string{"apiVersion", "kind", "metadata", "metadata.name", "spec", "spec.kubernetesRelease"}; !slices.Equal(set, want) {
		t.Errorf("create sets %q, want %q", set, want)
	}
	if want := []string{"spec.bogus"}; !slices.Equal(unknown, want) {
		t.Errorf("create uses unknown %q, want %q", unknown, want)
	}
	if create.Fields.InSchema == 0 {
		t.Error("the create's schema has no fields")
	}

	var embedded coverage.Report
	if err := json.Unmarshal([]byte(runCommand(t, "coverage", "--audit-log", log, "--release", "1.37", "-o", "json")), &embedded); err != nil {
		t.Fatal(err)
	}
	if embedded.Summary.UnknownRequests != 2 {
		t.Errorf("against 1.37, %d of the requests are unknown, want 2", embedded.Summary.UnknownRequests)
	}

	// --openapi names another API to measure against.
	root := newRootCommand()
	root.SetArgs([]string{"coverage", "--audit-log", log, "--release", "cluster", "--kubeconfig", kubeconfig, "--openapi", log})
	root.SetOut(&strings.Builder{})
	root.SetErr(&strings.Builder{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--openapi and --release cluster") {
		t.Errorf("coverage with --openapi and --release cluster: %v, want a refusal", err)
	}
}

// TestRecordReleaseCluster records kubectl listing custom resources with
// --release cluster: the list hits the CRD's operation.
func TestRecordReleaseCluster(t *testing.T) {
	kubeconfig := clientCertKubeconfig(t)
	waitForClusterSchema(t, sharedControlPlane.Get(t).Config, createSnoopSession, "spec.kubernetesRelease")
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "coverage.json")
	if stderr, err := runRecord(t, "record", "--kubeconfig", kubeconfig, "--release", "cluster", "-o", "json", "--out", out,
		"--", kubectl, "get", "snoopsessions", "-n", "default"); err != nil {
		t.Fatalf("record: %v\n%s", err, stderr)
	}
	r := mustReadReport(t, out)
	if !strings.HasPrefix(r.Summary.Release, "cluster v1.37.") {
		t.Errorf("release %q, want the cluster's", r.Summary.Release)
	}
	if list, ok := findOperation(&r, "GET", snoopSessionsPath); !ok || list.Hits != 1 {
		t.Errorf("list of SnoopSessions: %+v, %v; want 1 hit", list, ok)
	}
}
