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
	"apisnoop.dev/kube-apisnoop/internal/fields"
	"apisnoop.dev/kube-apisnoop/internal/fields/fieldstest"
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
	// Without field data the field section keeps its placeholder.
	if r.Summary.Fields == nil {
		browsertest.CheckFields(t, browser, jsonReport(t, r), "", "")
	}
	browsertest.Screenshot(t, browser, "audit-log-report")
}

// fieldDelta holds the hits and field counts of real request bodies, as
// internal/fields walks them against the 1.37 schemas: a Deployment
// (internal/fields/testdata) created as is three times and once with a
// misspelt and an ill-typed field, merge-patched twice with an unknown and
// an ill-typed field, a ConfigMap created with an unknown field, and a
// malformed ConfigMap body.
func fieldDelta(t *testing.T, cat *catalog.Catalog) *coverage.Delta {
	t.Helper()
	schemas, err := cat.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	deployment, bad := fieldstest.Deployment(t)
	d := &coverage.Delta{}
	w := fields.NewWalker(schemas)
	client := coverage.Client{User: "admin", UserAgent: "kubectl/v1.37.0"}
	for _, b := range []struct {
		op, verb string
		kind     fields.BodyKind
		body     []byte
		n        int
	}{
		{"createAppsV1NamespacedDeployment", "create", fields.Object, deployment, 3},
		{"createAppsV1NamespacedDeployment", "create", fields.Object, bad, 1},
		{"patchAppsV1NamespacedDeployment", "patch", fields.MergePatch, []byte(`{"spec":{"replicas":2,"paused":"yes"},"metadata":{"labelz":{"a":"b"}}}`), 2},
		{"createCoreV1NamespacedConfigMap", "create", fields.Object, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"prices"},"data":{"apple":"1"},"extra":true}`), 1},
	} {
		res, err := w.Walk(b.op, b.kind, b.body)
		if err != nil {
			t.Fatalf("walk a %s body of %s: %v", b.kind, b.op, err)
		}
		d.AddFields(b.op, res, int64(b.n))
		for range b.n {
			d.Add(coverage.Hit{OperationID: b.op, Verb: b.verb, Status: 201, Client: client})
		}
	}
	d.AddMalformedBodies("createCoreV1NamespacedConfigMap", 1)
	d.Add(coverage.Hit{OperationID: "createCoreV1NamespacedConfigMap", Verb: "create", Status: 400, Client: client})
	return d
}

// TestFieldCoverageInChromium renders a report with field data and checks
// from the page Chromium drew that the field cards and tables show the JSON
// report's numbers, that filtering the field tables works, and that the
// endpoint coverage around them is as before.
func TestFieldCoverageInChromium(t *testing.T) {
	browser := browsertest.New(t)
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	r := coverage.NewReport(cat, fieldDelta(t, cat))
	if fs := r.Summary.Fields; fs == nil || !fs.Schemas || fs.Stable.Hit < 50 || fs.Bodies != 8 {
		t.Fatalf("the report's field coverage holds too little: %+v", fs)
	}
	page := filepath.Join(t.TempDir(), "fields.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := htmlreport.Write(f, htmlreport.Page{Title: "API coverage", Source: "field test"}, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	browsertest.Open(t, browser, "file://"+page)
	want := jsonReport(t, r)
	browsertest.CheckReport(t, browser, want, "deployment")
	browsertest.CheckFields(t, browser, want, "deployment", "replica")
	ops, problems := browsertest.FieldRows(want)
	if len(ops) != 3 || len(problems) != 5 {
		t.Errorf("the JSON report has %d operations with bodies and %d unknown or ill-typed paths, want 3 and 5:\n%s\n%s",
			len(ops), len(problems), strings.Join(ops, "\n"), strings.Join(problems, "\n"))
	}
	browsertest.Screenshot(t, browser, "field-coverage")
}
