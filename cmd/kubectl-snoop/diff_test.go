package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport/browsertest"
)

// diffInputs writes two real coverage results from the envtest audit log:
// A of the API server's own requests, B of kubectl's.
func diffInputs(t *testing.T) (a, b string, ra, rb coverage.Report) {
	t.Helper()
	dir := t.TempDir()
	a, b = filepath.Join(dir, "apiserver.json"), filepath.Join(dir, "kubectl.json")
	for _, in := range []struct{ user, out string }{{"system:apiserver", a}, {"capture-admin", b}} {
		if err := os.WriteFile(in.out, []byte(runCommand(t, "coverage", "--audit-log", realLog, "--user", in.user, "-o", "json")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) coverage.Report {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return decodeReport(t, data)
	}
	return a, b, read(a), read(b)
}

// expectedDiff counts what the diff of two reports must show, from their
// JSON alone.
func expectedDiff(a, b coverage.Report) (gained, lost []string, counts browsertest.DiffCounts) {
	hitA, hitB := map[string]bool{}, map[string]bool{}
	for _, op := range a.Hit() {
		hitA[op.ID] = true
	}
	for _, op := range b.Hit() {
		hitB[op.ID] = true
		if !hitA[op.ID] {
			gained = append(gained, op.ID)
		} else {
			counts.Both++
		}
	}
	for id := range hitA {
		if !hitB[id] {
			lost = append(lost, id)
		}
	}
	counts.Gained, counts.Lost = len(gained), len(lost)
	counts.Levels = map[string][2]int{
		"stable": {a.Summary.Stable.Hit, b.Summary.Stable.Hit}, "beta": {a.Summary.Beta.Hit, b.Summary.Beta.Hit},
		"alpha": {a.Summary.Alpha.Hit, b.Summary.Alpha.Hit}, "eligible": {a.Summary.Eligible.Hit, b.Summary.Eligible.Hit},
		"conformanceHit": {a.Summary.ConformanceHit.Hit, b.Summary.ConformanceHit.Hit},
	}
	return gained, lost, counts
}

func TestDiffTable(t *testing.T) {
	a, b, ra, rb := diffInputs(t)
	gained, lost, counts := expectedDiff(ra, rb)
	if len(gained) == 0 || len(lost) == 0 {
		t.Fatalf("the inputs differ too little: %d gained, %d lost", len(gained), len(lost))
	}
	out := runCommand(t, "diff", a, b)
	for _, want := range []string{
		"A: " + a + " (Kubernetes 1.37)",
		"LEVEL", "stable",
		fmt.Sprintf("%d operations gained, %d lost, %d hit in both.", len(gained), len(lost), counts.Both),
		"Gained (hit in B, not in A):", "Lost (hit in A, not in B):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	gainedPart, lostPart, _ := strings.Cut(out, "Lost (hit in A, not in B):")
	for _, id := range gained {
		if !strings.Contains(gainedPart, " "+id+" ") {
			t.Errorf("gained %s not listed under Gained", id)
		}
	}
	for _, id := range lost {
		if !strings.Contains(lostPart, " "+id+" ") {
			t.Errorf("lost %s not listed under Lost", id)
		}
	}
	// The same results swapped: what was gained is lost.
	swapped := runCommand(t, "diff", b, a)
	if !strings.Contains(swapped, fmt.Sprintf("%d operations gained, %d lost", len(lost), len(gained))) {
		t.Errorf("swapped, the diff says:\n%.600s", swapped)
	}
}

func TestDiffRefusesWhatIsNotAReport(t *testing.T) {
	a, _, _, _ := diffInputs(t)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage.json": "{not json",
		"other.json":   `{"kind": "Pod"}`,
		"empty.json":   "",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		root := newRootCommand()
		root.SetArgs([]string{"diff", a, path})
		root.SetOut(&strings.Builder{})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "not a JSON coverage report") {
			t.Errorf("diff with %s: err = %v, want a refusal naming the file", name, err)
		}
	}
}

func TestDiffHTMLInChromium(t *testing.T) {
	browser := browsertest.New(t)
	a, b, ra, rb := diffInputs(t)
	_, _, counts := expectedDiff(ra, rb)
	page := runCommand(t, "diff", a, b, "-o", "html")
	browsertest.Open(t, browser, writeFile(t, "diff.html", page))
	browsertest.CheckDiff(t, browser, counts)
	// The lost table filtered by one resource keeps only its rows.
	gained, lost, _ := expectedDiff(ra, rb)
	if len(gained) == 0 {
		t.Fatal("nothing gained")
	}
	want := 0
	for _, id := range lost {
		if strings.Contains(strings.ToLower(id), "lease") {
			want++
		}
	}
	if want == 0 {
		t.Fatalf("no lease operation lost: %v", lost)
	}
	browsertest.CheckFilter(t, browser, "lost", "lease", want)
	browsertest.Screenshot(t, browser, "diff")

	// With field data on both sides, the field-changes table lists every
	// path gained and lost.
	a, b, ra, rb = fieldDiffInputs(t)
	_, _, counts = expectedDiff(ra, rb)
	counts.FieldChanges = expectedFieldChanges(ra, rb)
	browsertest.Open(t, browser, writeFile(t, "diff-fields.html", runCommand(t, "diff", a, b, "-o", "html")))
	browsertest.CheckDiff(t, browser, counts)
	browsertest.CheckFilter(t, browser, "field-changes", "lost", 3) // immutable, metadata.labels and metadata.labels{}
	browsertest.Screenshot(t, browser, "diff-fields")
}

// fieldDiffInputs writes two coverage results with field data, read by
// coverage --audit-log from audit logs at Request level: before, a
// ConfigMap created and labelled; after, created with other fields,
// annotated, and a Secret created.
func fieldDiffInputs(t *testing.T) (a, b string, ra, rb coverage.Report) {
	t.Helper()
	dir := t.TempDir()
	event := func(id, verb, uri, body string) string {
		return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":%q,"stage":"ResponseComplete","requestURI":%q,"verb":%q,"user":{"username":"tester"},"userAgent":"kubectl/v1.37.2","objectRef":{"resource":"configmaps","namespace":"ns","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":%s}`+"\n",
			id, uri, verb, body)
	}
	const (
		createCM = "/api/v1/namespaces/ns/configmaps?fieldManager=kubectl-create"
		patchCM  = "/api/v1/namespaces/ns/configmaps/cm?fieldManager=kubectl-patch"
	)
	logs := map[string]string{
		"before": event("a1", "create", createCM, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm"},"data":{"k":"v"},"immutable":true}`) +
			event("a2", "patch", patchCM, `{"metadata":{"labels":{"x":"y"}}}`),
		"after": event("b1", "create", createCM, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm"},"data":{"k":"v"},"binaryData":{"b":"eA=="}}`) +
			event("b2", "patch", patchCM, `{"metadata":{"annotations":{"x":"y"}}}`) +
			event("b3", "create", "/api/v1/namespaces/ns/secrets?fieldManager=kubectl-create", `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s"},"stringData":{"k":"v"}}`),
	}
	out := map[string]string{}
	for name, log := range logs {
		path := filepath.Join(dir, name+".log")
		if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = filepath.Join(dir, name+".json")
		if err := os.WriteFile(out[name], []byte(runCommand(t, "coverage", "--audit-log", path, "--release", "1.37", "-o", "json")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) coverage.Report {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		r := decodeReport(t, data)
		if r.Summary.Fields == nil {
			t.Fatalf("%s has no field data", name)
		}
		return r
	}
	return out["before"], out["after"], read(out["before"]), read(out["after"])
}

// expectedFieldChanges are the field paths set per operation in b and not
// in a (gained) and the reverse, from the reports' JSON alone, as rows
// "operation\tgained|lost\tpath".
func expectedFieldChanges(a, b coverage.Report) []string {
	set := func(r coverage.Report) map[string]map[string]bool {
		m := map[string]map[string]bool{}
		for _, op := range r.Operations {
			if op.Fields == nil {
				continue
			}
			m[op.ID] = map[string]bool{}
			for _, h := range op.Fields.Set {
				m[op.ID][h.Path] = true
			}
		}
		return m
	}
	sa, sb := set(a), set(b)
	rows := []string{}
	for _, c := range []struct {
		change   string
		from, to map[string]map[string]bool
	}{{"gained", sb, sa}, {"lost", sa, sb}} {
		for id, paths := range c.from {
			for path := range paths {
				if !c.to[id][path] {
					rows = append(rows, id+"\t"+c.change+"\t"+path)
				}
			}
		}
	}
	return rows
}

// With field data on both sides, the table lists per operation the paths
// gained (+) and lost (-), exactly those the JSON reports differ by.
func TestDiffTableFields(t *testing.T) {
	a, b, ra, rb := fieldDiffInputs(t)
	want := expectedFieldChanges(ra, rb)
	for _, row := range []string{
		"createCoreV1NamespacedConfigMap\tgained\tbinaryData{}", "createCoreV1NamespacedConfigMap\tlost\timmutable",
		"patchCoreV1NamespacedConfigMap\tgained\tmetadata.annotations{}", "patchCoreV1NamespacedConfigMap\tlost\tmetadata.labels{}",
		"createCoreV1NamespacedSecret\tgained\tstringData{}",
	} {
		if !slices.Contains(want, row) {
			t.Fatalf("the inputs lack the change %q: %v", row, want)
		}
	}
	out := runCommand(t, "diff", a, b)
	_, fieldPart, ok := strings.Cut(out, "\nFields: ")
	if !ok {
		t.Fatalf("no field changes in:\n%s", out)
	}
	gained, lost := 0, 0
	var got []string
	op := ""
	for _, line := range strings.Split(fieldPart, "\n") {
		switch {
		case strings.HasPrefix(line, "  + "):
			got = append(got, op+"\tgained\t"+strings.TrimPrefix(line, "  + "))
			gained++
		case strings.HasPrefix(line, "  - "):
			got = append(got, op+"\tlost\t"+strings.TrimPrefix(line, "  - "))
			lost++
		case strings.Contains(line, ": ") && strings.HasSuffix(line, " lost"):
			op, _, _ = strings.Cut(line, ": ")
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the diff lists field changes\n%s\nwant\n%s\nin:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	if !strings.HasPrefix(fieldPart, fmt.Sprintf("%d field paths gained (set by B's request bodies, not A's), %d lost.", gained, lost)) {
		t.Errorf("the field totals say %.100q, want %d gained, %d lost", fieldPart, gained, lost)
	}
	if !strings.Contains(fieldPart, "\ncreateCoreV1NamespacedConfigMap: 2 gained, 1 lost\n") {
		t.Errorf("no per-operation count for createCoreV1NamespacedConfigMap:\n%s", fieldPart)
	}
	// Without field data on one side (a Metadata-level log), nothing is
	// said about fields.
	plain, _, _, _ := diffInputs(t)
	if out := runCommand(t, "diff", plain, b); strings.Contains(out, "Fields:") {
		t.Errorf("a diff with one side without field data lists fields:\n%s", out)
	}
}
