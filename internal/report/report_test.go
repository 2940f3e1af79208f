package report

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
	"apisnoop.dev/kube-apisnoop/internal/fields/fieldstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func load(t *testing.T) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// endpointsOnly is a delta without field counts: a few operations hit, one
// failed, one unknown request shape.
func endpointsOnly() *coverage.Delta {
	d := &coverage.Delta{}
	client := coverage.Client{User: "admin", UserAgent: "kubectl/v1.37.0"}
	for _, h := range []coverage.Hit{
		{OperationID: "createAppsV1NamespacedDeployment", Verb: "create", Status: 201, Client: client},
		{OperationID: "createAppsV1NamespacedDeployment", Verb: "create", Status: 409, Client: client},
		{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200, Client: client},
		{OperationID: "readCoreV1NamespacedConfigMap", Verb: "get", Status: 404, Client: client},
		{Unknown: "GET /apis/example.com/v1/widgets", Verb: "list", Status: 404, Client: client},
	} {
		d.Add(h)
	}
	return d
}

// TestWithoutFieldsGolden: a report without field data renders as it did
// before field coverage existed (the golden files were written by that
// code).
func TestWithoutFieldsGolden(t *testing.T) {
	r := coverage.NewReport(load(t), endpointsOnly())
	for _, c := range []struct {
		file   string
		format string
		opts   Options
	}{
		{"endpoints.txt", "table", Options{MaxRows: 2}},
		{"endpoints.md", "markdown", Options{Untested: true}},
		{"endpoints-maxrows.md", "markdown", Options{MaxRows: 1}},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, c.format, r, c.opts); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", c.file)
		if *update {
			if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if buf.String() != string(want) {
			t.Errorf("%s %+v differs from %s:\n%s", c.format, c.opts, golden, buf.String())
		}
	}
}

// fieldDelta is endpointsOnly with the field counts of real request bodies,
// as internal/fields walks them against the 1.37 schemas: a Deployment
// created as is and with a misspelt and an ill-typed field, patched, a
// ConfigMap with an unknown field and one malformed body.
func fieldDelta(t *testing.T, cat *catalog.Catalog) *coverage.Delta {
	t.Helper()
	schemas, err := cat.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	deployment, bad := fieldstest.Deployment(t)
	d := endpointsOnly()
	w := fields.NewWalker(schemas)
	for _, b := range []struct {
		op   string
		kind fields.BodyKind
		body []byte
		n    int64
	}{
		{"createAppsV1NamespacedDeployment", fields.Object, deployment, 3},
		{"createAppsV1NamespacedDeployment", fields.Object, bad, 1},
		{"patchAppsV1NamespacedDeployment", fields.MergePatch, []byte(`{"spec":{"replicas":2,"paused":"yes"},"metadata":{"labelz":{"a":"b"}}}`), 2},
		{"createCoreV1NamespacedConfigMap", fields.Object, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"prices"},"data":{"apple":"1"},"extra":true}`), 1},
	} {
		res, err := w.Walk(b.op, b.kind, b.body)
		if err != nil {
			t.Fatalf("walk a %s body of %s: %v", b.kind, b.op, err)
		}
		d.AddFields(b.op, res, b.n)
	}
	d.AddMalformedBodies("createCoreV1NamespacedConfigMap", 1)
	return d
}

func fieldReport(t *testing.T) *coverage.Report {
	t.Helper()
	cat := load(t)
	r := coverage.NewReport(cat, fieldDelta(t, cat))
	if r.Summary.Fields == nil || !r.Summary.Fields.Schemas || r.Summary.Fields.Stable.Hit == 0 {
		t.Fatalf("the report has no field coverage worth rendering: %+v", r.Summary.Fields)
	}
	return r
}

func opByID(t *testing.T, r *coverage.Report, id string) coverage.OperationReport {
	t.Helper()
	for _, op := range r.Operations {
		if op.ID == id {
			return op
		}
	}
	t.Fatalf("no operation %s", id)
	return coverage.OperationReport{}
}

// wantLines fails the test unless out has every line of want, whole.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, w := range want {
		if !lines[strings.Join(strings.Fields(w), " ")] {
			t.Errorf("no line %q in:\n%s", w, out)
		}
	}
}

func TestTableFields(t *testing.T) {
	r := fieldReport(t)
	fs := r.Summary.Fields
	var buf bytes.Buffer
	if err := Table(&buf, r, Options{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	dep := opByID(t, r, "createAppsV1NamespacedDeployment")
	patch := opByID(t, r, "patchAppsV1NamespacedDeployment")
	cm := opByID(t, r, "createCoreV1NamespacedConfigMap")
	level := func(name string, l coverage.LevelSummary, f coverage.FieldLevelSummary) string {
		return fmt.Sprintf("%s %d %d %.1f%% %d / %d (%.1f%%)", name, l.Hit, l.Operations, l.Percent, f.Hit, f.InSchema, f.Percent)
	}
	s := r.Summary
	wantLines(t, out,
		"LEVEL HIT OPERATIONS COVERAGE FIELDS HIT / IN SCHEMA",
		level("stable", s.Stable, fs.Stable), level("beta", s.Beta, fs.Beta), level("alpha", s.Alpha, fs.Alpha), level("eligible", s.Eligible, fs.Eligible),
		fmt.Sprintf("conformance-tested 0 %d 0.0%% -", s.ConformanceHit.Operations),
		"Field coverage: 8 request bodies of 3 operations, 1 malformed.",
		"BODIES LEVEL OPERATION FIELDS HIT / IN SCHEMA COVERAGE UNKNOWN ILL-TYPED",
		fmt.Sprintf("4 stable (eligible) createAppsV1NamespacedDeployment %d / %d %.1f%% 1 1", dep.Fields.Hit, dep.Fields.InSchema, dep.Fields.Percent),
		fmt.Sprintf("2 stable (eligible) patchAppsV1NamespacedDeployment %d / %d %.1f%% 1 1", patch.Fields.Hit, patch.Fields.InSchema, patch.Fields.Percent),
		fmt.Sprintf("2 (1 malformed) stable (eligible) createCoreV1NamespacedConfigMap %d / %d %.1f%% 1 0", cm.Fields.Hit, cm.Fields.InSchema, cm.Fields.Percent),
		"Unknown and ill-typed fields (5):",
		"BODIES KIND OPERATION PATH",
		"2 unknown patchAppsV1NamespacedDeployment metadata.labelz",
		"2 ill-typed patchAppsV1NamespacedDeployment spec.paused",
		"1 unknown createAppsV1NamespacedDeployment spec.replica",
		"1 ill-typed createAppsV1NamespacedDeployment spec.replicas",
		"1 unknown createCoreV1NamespacedConfigMap extra",
	)
	if dep.Fields.Hit < 40 || dep.Fields.InSchema < 1000 {
		t.Errorf("a real Deployment hit %d of %d fields", dep.Fields.Hit, dep.Fields.InSchema)
	}
	// The counts of the body-taking operations no body was seen for.
	idle := 0
	for _, op := range r.Operations {
		if op.Fields != nil && op.Fields.Bodies == 0 {
			idle++
		}
	}
	wantLines(t, out, fmt.Sprintf("Field coverage (3 operations with request bodies; %d more take a body, none seen):", idle))
	if idle < 100 {
		t.Errorf("only %d operations take a body without one seen", idle)
	}

	// MaxRows cuts both lists.
	buf.Reset()
	if err := Table(&buf, r, Options{MaxRows: 1}); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	wantLines(t, out, "... 2 more", "... 4 more", "2 unknown patchAppsV1NamespacedDeployment metadata.labelz")
	if strings.Contains(out, "createCoreV1NamespacedConfigMap") || strings.Contains(out, "spec.replicas") {
		t.Errorf("MaxRows 1 shows more than a row of each list:\n%s", out)
	}
}

func TestMarkdownFields(t *testing.T) {
	r := fieldReport(t)
	fs, s := r.Summary.Fields, r.Summary
	var buf bytes.Buffer
	if err := Write(&buf, "markdown", r, Options{Untested: true}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	dep := opByID(t, r, "createAppsV1NamespacedDeployment")
	wantLines(t, out,
		"| level | hit | operations | coverage | fields hit / in schema |",
		"|---|---:|---:|---:|---:|",
		fmt.Sprintf("| stable | %d | %d | %.1f%% | %d / %d (%.1f%%) |", s.Stable.Hit, s.Stable.Operations, s.Stable.Percent, fs.Stable.Hit, fs.Stable.InSchema, fs.Stable.Percent),
		fmt.Sprintf("| eligible | %d | %d | %.1f%% | %d / %d (%.1f%%) |", s.Eligible.Hit, s.Eligible.Operations, s.Eligible.Percent, fs.Eligible.Hit, fs.Eligible.InSchema, fs.Eligible.Percent),
		fmt.Sprintf("| conformance-tested | 0 | %d | 0.0%% | - |", s.ConformanceHit.Operations),
		"## Field coverage (3)",
		fmt.Sprintf("| 4 | stable (eligible) | `createAppsV1NamespacedDeployment` | %d / %d | %.1f%% | 1 | 1 |", dep.Fields.Hit, dep.Fields.InSchema, dep.Fields.Percent),
		"## Unknown and ill-typed fields (5)",
		"| 2 | unknown | `patchAppsV1NamespacedDeployment` | `metadata.labelz` |",
		"| 1 | ill-typed | `createAppsV1NamespacedDeployment` | `spec.replicas` |",
	)
	// The field sections come before the untested list, which stays last.
	if i, j := strings.Index(out, "## Unknown and ill-typed fields"), strings.Index(out, "## Eligible operations not hit"); i < 0 || j < i {
		t.Errorf("field sections at %d, untested at %d", i, j)
	}

	buf.Reset()
	if err := Markdown(&buf, r, Options{MaxRows: 2}); err != nil {
		t.Fatal(err)
	}
	wantLines(t, buf.String(), "| | | 1 more | | | | |", "| | | 3 more | |")
}

// TestFieldPathsFromBodies: unknown field names come from request bodies
// and may hold anything; they cannot break a table row.
func TestFieldPathsFromBodies(t *testing.T) {
	cat := load(t)
	d := &coverage.Delta{}
	d.AddFields("createCoreV1NamespacedConfigMap", fields.Result{
		Set:     []string{"data{}"},
		Unknown: []string{"metadata.a|b", "spec.x`y``z", "tab\there", "line\nbreak | `"},
	}, 1)
	r := coverage.NewReport(cat, d)

	var buf bytes.Buffer
	if err := Markdown(&buf, r, Options{}); err != nil {
		t.Fatal(err)
	}
	wantLines(t, buf.String(),
		"Field coverage: 1 request body of 1 operation.",
		"| 1 | unknown | `createCoreV1NamespacedConfigMap` | `metadata.a\\|b` |",
		"| 1 | unknown | `createCoreV1NamespacedConfigMap` | ```spec.x`y``z``` |",
		"| 1 | unknown | `createCoreV1NamespacedConfigMap` | `\"tab\\there\"` |",
		"| 1 | unknown | `createCoreV1NamespacedConfigMap` | ``\"line\\nbreak \\| `\"`` |",
	)
	buf.Reset()
	if err := Table(&buf, r, Options{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "\there") || strings.Contains(out, "line\nbreak") {
		t.Errorf("a control character of a field name reached the terminal:\n%s", out)
	}
	wantLines(t, out, `1 unknown createCoreV1NamespacedConfigMap "tab\there"`)
}
