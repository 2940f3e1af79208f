package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

func runCommand(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("kubectl-snoop %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

func TestCoverageTable(t *testing.T) {
	out := runCommand(t, "coverage", "--audit-log", "testdata/audit.log", "--release", "1.37")
	for _, want := range []string{
		"Kubernetes 1.37: 4 requests, 1 failed, 1 unknown",
		"listCoreV1NamespacedPod",
		"list=1 watch=1",
		"patchAppsV1NamespacedDeploymentScale",
		"GET /apis/example.com/v1/namespaces/{namespace}/widgets/{name}",
		"Eligible operations not hit",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCoverageJSON(t *testing.T) {
	out := runCommand(t, "coverage", "--audit-log", "testdata/audit.log", "-o", "json")
	var r coverage.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not a JSON report: %v", err)
	}
	if r.Summary.Stable.Hit != 2 || len(r.Operations) < 1000 || r.Summary.Requests != 4 {
		t.Errorf("summary %+v with %d operations", r.Summary, len(r.Operations))
	}
}

func TestCoverageMarkdown(t *testing.T) {
	out := runCommand(t, "coverage", "--audit-log", "testdata/audit.log", "-o", "markdown", "--untested=false")
	if !strings.Contains(out, "| stable | 2 |") || strings.Contains(out, "not hit") {
		t.Errorf("markdown output:\n%s", out)
	}
}

func TestClassify(t *testing.T) {
	out := runCommand(t, "classify", "--release", "1.37", "testdata/audit.log")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), out)
	}
	var watch classification
	if err := json.Unmarshal([]byte(lines[1]), &watch); err != nil {
		t.Fatal(err)
	}
	if watch.OperationID != "listCoreV1NamespacedPod" || !watch.Watch || watch.Info.Verb != "watch" {
		t.Errorf("watch classified as %+v", watch)
	}
}
