package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/audit"
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

const realLog = "../../internal/audit/testdata/envtest-audit.log.gz"

// realLines are the lines of a real audit log (every stage logged).
func realLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(realLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// TestCoverageCountsEachRequestOnce: the real log backwards (every
// ResponseComplete before its earlier stages), followed by the same log
// again, gzipped, gives the coverage of the log alone.
func TestCoverageCountsEachRequestOnce(t *testing.T) {
	lines := realLines(t)
	slices.Reverse(lines)
	backwards := filepath.Join(t.TempDir(), "backwards.log")
	if err := os.WriteFile(backwards, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := runCommand(t, "coverage", "--audit-log", realLog, "-o", "json")
	got := runCommand(t, "coverage", "--audit-log", backwards, "--audit-log", realLog, "-o", "json")
	if got != want {
		t.Errorf("backwards and repeated, coverage differs:\n%s\nwant\n%s", got, want)
	}
	var r coverage.Report
	if err := json.Unmarshal([]byte(got), &r); err != nil {
		t.Fatal(err)
	}
	if r.Summary.Requests != 584 {
		t.Errorf("%d requests, want 584", r.Summary.Requests)
	}
	// Two requests with methods the API server does not know (FROB and
	// OPTIONS on a pod), logged with an empty verb, are unknown requests.
	var emptyVerb int64
	for _, u := range r.Unknown {
		if u.Shape == audit.UnknownMethod+" /api/v1/namespaces/{namespace}/pods/{name}" {
			emptyVerb = u.Requests
		}
	}
	if emptyVerb != 2 {
		t.Errorf("unknown requests %+v; want 2 of the empty-verb shape", r.Unknown)
	}
}

// TestClassifyOneLinePerRequest: classify prints a request once, not once
// per event.
func TestClassifyOneLinePerRequest(t *testing.T) {
	out := runCommand(t, "classify", realLog, realLog)
	ids := map[string]bool{}
	var emptyVerb int
	for line := range strings.Lines(out) {
		var c classification
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		if ids[c.AuditID] {
			t.Errorf("request %s printed twice", c.AuditID)
		}
		ids[c.AuditID] = true
		if c.AuditVerb == "" {
			emptyVerb++
			if c.Method != "" || c.OperationID != "" || c.Status != 405 {
				t.Errorf("empty verb classified as %+v", c)
			}
		}
	}
	if len(ids) != 584 || emptyVerb != 2 {
		t.Errorf("%d requests, %d with an empty verb; want 584 and 2", len(ids), emptyVerb)
	}
}
