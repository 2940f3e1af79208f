package coverage

import (
	"sort"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// LevelSummary counts the operations of one level and how many were hit.
type LevelSummary struct {
	Operations int     `json:"operations"`
	Hit        int     `json:"hit"`
	Percent    float64 `json:"percent"`
}

func (l *LevelSummary) finish() {
	if l.Operations > 0 {
		l.Percent = float64(l.Hit) * 100 / float64(l.Operations)
	}
}

// Summary is the headline of a report. Levels count operations that are not
// deprecated, as the catalog does; Eligible counts the stable operations
// eligible for conformance, and ConformanceHit those of them hit by a
// conformance test of the release.
type Summary struct {
	Release         string       `json:"release"`
	Requests        int64        `json:"requests"`
	FailedRequests  int64        `json:"failedRequests"`
	UnknownRequests int64        `json:"unknownRequests"`
	Stable          LevelSummary `json:"stable"`
	Beta            LevelSummary `json:"beta"`
	Alpha           LevelSummary `json:"alpha"`
	Eligible        LevelSummary `json:"eligible"`
	ConformanceHit  LevelSummary `json:"conformanceHit"`
	// DeprecatedHit counts the deprecated (legacy watch) operations used.
	DeprecatedHit int `json:"deprecatedHit"`
	// Fields is the field coverage of request bodies, when the delta holds
	// any (bodies were recorded).
	Fields *FieldSummary `json:"fields,omitempty"`
}

// OperationReport is one operation of the release with what hit it.
type OperationReport struct {
	ID          string              `json:"id"`
	Method      string              `json:"method"`
	Path        string              `json:"path"`
	Level       catalog.Level       `json:"level"`
	Eligibility catalog.Eligibility `json:"eligibility"`
	Deprecated  bool                `json:"deprecated,omitempty"`
	Kind        string              `json:"kind,omitempty"`
	Hits        int64               `json:"hits"`
	ByVerb      map[string]int64    `json:"byVerb,omitempty"`
	ByStatus    map[string]int64    `json:"byStatus,omitempty"`
	Tests       []string            `json:"tests,omitempty"`
	Conformance bool                `json:"conformanceHit,omitempty"`
	Category    string              `json:"category,omitempty"`
	// Fields is the field coverage of the operation's request bodies, for
	// operations taking a body when the delta holds field counts.
	Fields *FieldReport `json:"fields,omitempty"`
}

// UnknownReport is one unknown request shape.
type UnknownReport struct {
	Shape    string           `json:"shape"`
	Requests int64            `json:"requests"`
	ByStatus map[string]int64 `json:"byStatus,omitempty"`
}

// ClientReport is what one client did.
type ClientReport struct {
	Client
	Requests   int64 `json:"requests"`
	Failed     int64 `json:"failed"`
	Unknown    int64 `json:"unknown"`
	Operations int   `json:"operations"`
}

// TestReport is what one e2e test hit.
type TestReport struct {
	Name        string `json:"name"`
	Conformance bool   `json:"conformance"`
	Operations  int    `json:"operations"`
}

// Report is a delta measured against a release's catalog.
type Report struct {
	Summary    Summary           `json:"summary"`
	Operations []OperationReport `json:"operations"`
	// Untested are the eligible operations nobody hit.
	Untested []string        `json:"untested"`
	Unknown  []UnknownReport `json:"unknown,omitempty"`
	Clients  []ClientReport  `json:"clients,omitempty"`
	Tests    []TestReport    `json:"tests,omitempty"`
}

// NewReport measures d against c.
func NewReport(c *catalog.Catalog, d *Delta) *Report {
	if d == nil {
		d = &Delta{}
	}
	r := &Report{Summary: Summary{
		Release: c.Release, Requests: d.Requests, FailedRequests: d.FailedRequests, UnknownRequests: d.UnknownRequests,
	}}

	// Which operations a conformance test hit, and which tests hit each one.
	testsOf := map[string][]string{}
	conformanceOps := map[string]bool{}
	for test, ops := range d.Tests {
		_, isConformance := c.ConformanceTest(test)
		r.Tests = append(r.Tests, TestReport{Name: test, Conformance: isConformance, Operations: len(ops)})
		for id := range ops {
			testsOf[id] = append(testsOf[id], test)
			if isConformance {
				conformanceOps[id] = true
			}
		}
	}
	sort.Slice(r.Tests, func(i, j int) bool { return r.Tests[i].Name < r.Tests[j].Name })

	s := &r.Summary
	r.Operations = make([]OperationReport, 0, len(c.Operations))
	for i := range c.Operations {
		op := &c.Operations[i]
		row := OperationReport{
			ID: op.ID, Method: op.Method, Path: op.Path, Level: op.Level, Eligibility: op.Eligibility,
			Deprecated: op.Deprecated, Kind: op.Kind, Category: op.Category,
		}
		if counts := d.Operations[op.ID]; counts != nil {
			row.Hits, row.ByVerb, row.ByStatus = counts.Requests, counts.ByVerb, counts.ByStatus
		}
		row.Tests = testsOf[op.ID]
		sort.Strings(row.Tests)
		row.Conformance = conformanceOps[op.ID]
		hit := row.Hits > 0

		var level *LevelSummary
		switch {
		case op.Deprecated:
			if hit {
				s.DeprecatedHit++
			}
		case op.Level == catalog.Stable:
			level = &s.Stable
		case op.Level == catalog.Beta:
			level = &s.Beta
		default:
			level = &s.Alpha
		}
		if level != nil {
			level.Operations++
			if hit {
				level.Hit++
			}
		}
		if op.Eligibility == catalog.Eligible {
			s.Eligible.Operations++
			s.ConformanceHit.Operations++
			if hit {
				s.Eligible.Hit++
			} else {
				r.Untested = append(r.Untested, op.ID)
			}
			if row.Conformance {
				s.ConformanceHit.Hit++
			}
		}
		r.Operations = append(r.Operations, row)
	}
	for _, l := range []*LevelSummary{&s.Stable, &s.Beta, &s.Alpha, &s.Eligible, &s.ConformanceHit} {
		l.finish()
	}
	addFieldCoverage(r, c, d)

	for shape, counts := range d.Unknown {
		r.Unknown = append(r.Unknown, UnknownReport{Shape: shape, Requests: counts.Requests, ByStatus: counts.ByStatus})
	}
	sort.Slice(r.Unknown, func(i, j int) bool {
		if r.Unknown[i].Requests != r.Unknown[j].Requests {
			return r.Unknown[i].Requests > r.Unknown[j].Requests
		}
		return r.Unknown[i].Shape < r.Unknown[j].Shape
	})
	for client, counts := range d.Clients {
		r.Clients = append(r.Clients, ClientReport{Client: client, Requests: counts.Requests, Failed: counts.Failed,
			Unknown: counts.Unknown, Operations: len(counts.Operations)})
	}
	sort.Slice(r.Clients, func(i, j int) bool {
		if r.Clients[i].Requests != r.Clients[j].Requests {
			return r.Clients[i].Requests > r.Clients[j].Requests
		}
		return clientLess(r.Clients[i].Client, r.Clients[j].Client)
	})
	return r
}

// Hit returns the operations that were hit, most used first.
func (r *Report) Hit() []OperationReport {
	var hit []OperationReport
	for _, op := range r.Operations {
		if op.Hits > 0 {
			hit = append(hit, op)
		}
	}
	sort.SliceStable(hit, func(i, j int) bool { return hit[i].Hits > hit[j].Hits })
	return hit
}
