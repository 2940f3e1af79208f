package results

import (
	"slices"
	"strconv"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// MaxUnknownPaths is how many unknown request shapes the status shows: the
// API's bound on status.unknownPaths.
const MaxUnknownPaths = 5

// Summary returns the status fields the collector owns, measured from st:
// requests, unknownRequests, failedRequests, ignoredRequests, coverage,
// unknownPaths (the most frequent first, ties by path) and clients. The
// others, lastUpdateTime and resultsConfigMaps included, are left zero for
// the writer to set.
//
// Coverage counts operations per level as coverage.NewReport does: levels
// leave deprecated operations out, like catalog.Summary, so the totals equal
// the ones the session controller shows before any request is measured.
// Without a catalog (c nil) coverage is left empty.
func Summary(st *State, c *catalog.Catalog) snoopv1alpha1.SnoopSessionStatus {
	d := &st.Delta
	status := snoopv1alpha1.SnoopSessionStatus{
		Requests:        d.Requests,
		UnknownRequests: d.UnknownRequests,
		FailedRequests:  d.FailedRequests,
		IgnoredRequests: st.Ignored,
		Clients:         int32(len(d.Clients)),
	}
	if c != nil {
		s := coverage.NewReport(c, d).Summary
		status.Coverage = snoopv1alpha1.CoverageSummary{
			Stable:   levelCoverage(s.Stable),
			Beta:     levelCoverage(s.Beta),
			Alpha:    levelCoverage(s.Alpha),
			Eligible: levelCoverage(s.Eligible),
		}
	}
	status.UnknownPaths = topUnknown(d)
	return status
}

func levelCoverage(l coverage.LevelSummary) snoopv1alpha1.LevelCoverage {
	return snoopv1alpha1.LevelCoverage{
		Operations: int32(l.Operations),
		Hit:        int32(l.Hit),
		Percent:    strconv.FormatFloat(l.Percent, 'f', 1, 64),
	}
}

// topUnknown returns the MaxUnknownPaths most frequent unknown shapes, in
// the order of coverage.Report's: by requests, then by shape.
func topUnknown(d *coverage.Delta) []snoopv1alpha1.PathCount {
	var top []snoopv1alpha1.PathCount
	for shape, counts := range d.Unknown {
		pc := snoopv1alpha1.PathCount{Path: shape, Count: counts.Requests}
		i := 0
		for i < len(top) && (top[i].Count > pc.Count || top[i].Count == pc.Count && top[i].Path < pc.Path) {
			i++
		}
		if i < MaxUnknownPaths {
			top = slices.Insert(top, i, pc)[:min(len(top)+1, MaxUnknownPaths)]
		}
	}
	return top
}
