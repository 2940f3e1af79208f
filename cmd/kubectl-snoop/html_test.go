package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport/browsertest"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// decodeReport reads a JSON coverage report.
func decodeReport(t *testing.T, data []byte) coverage.Report {
	t.Helper()
	var r coverage.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("not a JSON report: %v\n%.300s", err, data)
	}
	return r
}

// mustReadReport reads a JSON coverage report from a file, as diff does.
func mustReadReport(t *testing.T, path string) coverage.Report {
	t.Helper()
	r, err := readReport(path)
	if err != nil {
		t.Fatal(err)
	}
	return *r
}

// writeFile writes a page into the test's temp dir and returns its file:// URL.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return "file://" + path
}

// TestRecordHTMLInChromium records real kubectl commands against envtest
// through the recording proxy, once as JSON and once as HTML, and checks
// the page Chromium draws against the JSON. Each run uses a fresh discovery
// cache, so both make the same requests.
func TestRecordHTMLInChromium(t *testing.T) {
	browser := browsertest.New(t)
	kubeconfig := clientCertKubeconfig(t)
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	record := func(format string) string {
		t.Helper()
		dir := t.TempDir()
		script := strings.Join([]string{
			kubectl + " --cache-dir " + dir + "/cache get configmaps -A",
			kubectl + " --cache-dir " + dir + "/cache get configmap does-not-exist -n default",
			"true",
		}, "; ")
		out := filepath.Join(dir, "coverage."+format)
		if stderr, err := runRecord(t, "record", "--kubeconfig", kubeconfig, "--release", "1.37", "-o", format, "--out", out, "--", "sh", "-c", script); err != nil {
			t.Fatalf("record: %v\n%s", err, stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	want := decodeReport(t, []byte(record("json")))
	if want.Summary.FailedRequests == 0 {
		t.Fatalf("the recording has no failed request: %+v", want.Summary)
	}
	page := record("html")
	if !strings.Contains(page, "kubectl snoop record of sh") {
		t.Error("the page does not name what was recorded")
	}
	browsertest.Open(t, browser, writeFile(t, "record.html", page))
	browsertest.CheckReport(t, browser, want, "configmap")
	browsertest.Screenshot(t, browser, "record")
}

// TestCoverageHTMLInChromium renders a real envtest audit log as HTML and
// checks the page against the JSON rendering of the same log.
func TestCoverageHTMLInChromium(t *testing.T) {
	browser := browsertest.New(t)
	want := decodeReport(t, []byte(runCommand(t, "coverage", "--audit-log", realLog, "-o", "json")))
	page := runCommand(t, "coverage", "--audit-log", realLog, "-o", "html")
	browsertest.Open(t, browser, writeFile(t, "coverage.html", page))
	browsertest.CheckReport(t, browser, want, "configmap")
	browsertest.Screenshot(t, browser, "coverage")
}

// TestReportHTMLInChromium renders a session's persisted results as HTML.
func TestReportHTMLInChromium(t *testing.T) {
	browser := browsertest.New(t)
	f := newReportFixture(t)
	f.session(t, "demo", "1.37", knownState())
	out, err := f.report(t, "demo", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	want := decodeReport(t, []byte(out))
	page, err := f.report(t, "demo", "-o", "html")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, "SnoopSession "+f.namespace+"/demo") {
		t.Error("the page does not name the session")
	}
	browsertest.Open(t, browser, writeFile(t, "report.html", page))
	browsertest.CheckReport(t, browser, want, "pod")
	if rows := browsertest.Rows(t, browser, "unknown-requests"); len(rows) != 1 || !strings.Contains(rows[0], "/apis/example.com/v1/widgets") {
		t.Errorf("the unknown-requests table shows %q", rows)
	}
	browsertest.Screenshot(t, browser, "report")
}
