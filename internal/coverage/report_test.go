package coverage

import (
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

func TestReportSummary(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	var d Delta
	for _, h := range sampleHits() {
		d.Add(h)
	}
	r := NewReport(cat, &d)
	s := r.Summary
	sum := cat.Summary()
	if s.Stable.Operations != sum.Stable || s.Beta.Operations != sum.Beta || s.Alpha.Operations != sum.Alpha || s.Eligible.Operations != sum.Eligible {
		t.Errorf("level totals %+v do not match the catalog %+v", s, sum)
	}
	// listCoreV1NamespacedPod, readCoreV1NamespacedPod and the scale patch
	// are stable and eligible.
	if s.Stable.Hit != 3 || s.Eligible.Hit != 3 {
		t.Errorf("stable hit %d, eligible hit %d; want 3 and 3", s.Stable.Hit, s.Eligible.Hit)
	}
	if len(r.Untested) != sum.Eligible-3 {
		t.Errorf("untested %d, want %d", len(r.Untested), sum.Eligible-3)
	}
	if s.Requests != 6 || s.UnknownRequests != 2 || s.FailedRequests != 2 {
		t.Errorf("request counts %+v", s)
	}
	// The e2e test is attributed, and counts as conformance only if 1.37
	// lists it (this made-up name is not).
	if len(r.Tests) != 1 || r.Tests[0].Conformance || s.ConformanceHit.Hit != 0 {
		t.Errorf("tests %+v, conformance hit %d", r.Tests, s.ConformanceHit.Hit)
	}
	if len(r.Unknown) != 2 || len(r.Hit()) != 3 {
		t.Errorf("unknown %d, hit %d; want 2 and 3", len(r.Unknown), len(r.Hit()))
	}
}

func TestReportConformanceAttribution(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	test := cat.ConformanceTests[0].Codename
	var d Delta
	d.Add(Hit{OperationID: "readCoreV1NamespacedPod", Verb: "get", Status: 200, Test: test})
	r := NewReport(cat, &d)
	if r.Summary.ConformanceHit.Hit != 1 || !r.Tests[0].Conformance {
		t.Errorf("conformance hit %d, tests %+v; want the conformance test counted", r.Summary.ConformanceHit.Hit, r.Tests)
	}
}
