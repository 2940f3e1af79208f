package htmlreport_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport/browsertest"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/report"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// fullRelease is a report of every operation of 1.37, each hit once.
func fullRelease(t testing.TB) *coverage.Report {
	t.Helper()
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	d := &coverage.Delta{}
	for _, op := range cat.Operations {
		d.Add(coverage.Hit{OperationID: op.ID, Verb: "get", Status: 200, Client: coverage.Client{User: "admin", UserAgent: "kubectl/v1.37.0"}})
	}
	return coverage.NewReport(cat, d)
}

// TestSelfContained: the page loads nothing from anywhere (no script,
// style, image or font URL), names its release and source, and marks field
// coverage as not measured.
func TestSelfContained(t *testing.T) {
	r := fullRelease(t)
	var buf bytes.Buffer
	if err := htmlreport.Write(&buf, htmlreport.Page{Title: "API coverage", Source: "audit log a.log"}, r); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	t.Logf("a report of all %d operations of 1.37, every one hit: %d bytes", len(r.Operations), len(page))
	for _, re := range []string{`<script[^>]+src=`, `<link[^>]+href=`, `<img[^>]+src=`, `url\(\s*['"]?(https?:)?//`, `@import`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page loads something from outside: %q", m)
		}
	}
	for _, want := range []string{"audit log a.log", "Not measured", `"release":"1.37"`, "replaceNetworkingV1NamespacedIngressStatus"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestEscapes: data cannot close the script element that holds it.
func TestEscapes(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	d := &coverage.Delta{}
	d.Add(coverage.Hit{Unknown: "GET /</script><script>alert(1)</script>", Verb: "get", Status: 404})
	var buf bytes.Buffer
	if err := htmlreport.Write(&buf, htmlreport.Page{Title: "<b>t</b>", Source: "</script>"}, coverage.NewReport(cat, d)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "</script>"); n != 4 {
		t.Errorf("%d </script> in the page, want the 4 of its own script elements", n)
	}
}

// BenchmarkWriteFullRelease measures rendering every operation of 1.37.
func BenchmarkWriteFullRelease(b *testing.B) {
	r := fullRelease(b)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := htmlreport.Write(&buf, htmlreport.Page{Title: "API coverage", Source: "bench"}, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/page")
}

// jsonReport is the report as its JSON rendering says it, which is what the
// page's numbers must equal.
func jsonReport(t *testing.T, r *coverage.Report) coverage.Report {
	t.Helper()
	var buf bytes.Buffer
	if err := report.Write(&buf, "json", r, report.Options{}); err != nil {
		t.Fatal(err)
	}
	var back coverage.Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	return back
}

// TestReportFromAuditLogInChromium renders the coverage of a real API
// server's audit log (kubectl's requests against envtest) and checks the
// page Chromium drew.
func TestReportFromAuditLogInChromium(t *testing.T) {
	browser := browsertest.New(t)
	cp := testenv.StartForTest(t, testenv.WithAuditLog())
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"create", "namespace", "shop"},
		{"create", "configmap", "prices", "-n", "shop", "--from-literal=apple=1"},
		{"get", "configmaps", "-n", "shop"},
		{"get", "pods", "-A"},
		{"create", "deployment", "web", "-n", "shop", "--image=example.invalid/web"},
		{"scale", "deployment", "web", "-n", "shop", "--replicas=2"},
		{"get", "secret", "missing", "-n", "shop"}, // fails: 404
	} {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil && args[0] != "get" {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Open(cp.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	d := &coverage.Delta{}
	if _, err := audit.Analyze(log, match.New(cat), d, nil, nil); err != nil {
		t.Fatal(err)
	}
	r := coverage.NewReport(cat, d)
	if r.Summary.FailedRequests == 0 || r.Summary.Stable.Hit < 5 {
		t.Fatalf("the audit log holds too little: %+v", r.Summary)
	}

	page := filepath.Join(t.TempDir(), "coverage.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := htmlreport.Write(f, htmlreport.Page{Title: "API coverage", Source: "audit log " + cp.AuditLog, Generated: time.Now()}, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	browsertest.Open(t, browser, "file://"+page)
	browsertest.CheckReport(t, browser, jsonReport(t, r), "configmap")
	browsertest.Screenshot(t, browser, "audit-log-report")
}
