package main

import (
	"fmt"
	"os"
	"path/filepath"
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
}
