package htmlreport

import (
	"fmt"
	"io"
	"sort"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// Diff is what changed between two coverage results, A (before) and B
// (after): two test runs, or two releases of an add-on. Operations are
// told apart by operationId.
type Diff struct {
	NameA    string `json:"nameA"`
	NameB    string `json:"nameB"`
	ReleaseA string `json:"releaseA"`
	ReleaseB string `json:"releaseB"`
	// Levels are the summary's levels with the hits of each side.
	Levels []DiffLevel `json:"levels"`
	// Gained are hit in B and not in A; Lost hit in A and not in B; Both
	// hit in both. Each is sorted by operationId.
	Gained []DiffOperation `json:"gained"`
	Lost   []DiffOperation `json:"lost"`
	Both   []DiffOperation `json:"both"`
	// Fields says both reports have field data (Summary.Fields), so that
	// the operations' FieldsGained and FieldsLost are filled.
	Fields bool `json:"fields,omitempty"`
	// FieldsGained and FieldsLost total the operations' paths.
	FieldsGained int `json:"fieldsGained,omitempty"`
	FieldsLost   int `json:"fieldsLost,omitempty"`
}

// DiffLevel is one level of the summaries side by side.
type DiffLevel struct {
	Level       string `json:"level"`
	HitA        int    `json:"hitA"`
	HitB        int    `json:"hitB"`
	OperationsA int    `json:"operationsA"`
	OperationsB int    `json:"operationsB"`
}

// DiffOperation is an operation hit on either side, described as B's
// release has it (A's when B's does not know it).
type DiffOperation struct {
	ID          string `json:"id"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Level       string `json:"level"`
	Eligibility string `json:"eligibility"`
	Deprecated  bool   `json:"deprecated,omitempty"`
	Kind        string `json:"kind,omitempty"`
	HitsA       int64  `json:"hitsA"`
	HitsB       int64  `json:"hitsB"`
	// FieldsGained are the field paths B's request bodies set and A's did
	// not, FieldsLost the reverse, sorted; only when Diff.Fields. Every set
	// path counts, those not in the schema (FieldHit.NotInSchema) too.
	FieldsGained []string `json:"fieldsGained,omitempty"`
	FieldsLost   []string `json:"fieldsLost,omitempty"`
}

// NewDiff compares two reports.
func NewDiff(nameA string, a *coverage.Report, nameB string, b *coverage.Report) *Diff {
	d := &Diff{NameA: nameA, NameB: nameB, ReleaseA: a.Summary.Release, ReleaseB: b.Summary.Release,
		Gained: []DiffOperation{}, Lost: []DiffOperation{}, Both: []DiffOperation{}}
	levels := func(s coverage.Summary) []coverage.LevelSummary {
		return []coverage.LevelSummary{s.Stable, s.Beta, s.Alpha, s.Eligible, s.ConformanceHit}
	}
	la, lb := levels(a.Summary), levels(b.Summary)
	for i, name := range []string{"stable", "beta", "alpha", "eligible", "conformanceHit"} {
		d.Levels = append(d.Levels, DiffLevel{Level: name, HitA: la[i].Hit, HitB: lb[i].Hit, OperationsA: la[i].Operations, OperationsB: lb[i].Operations})
	}

	ops := map[string]*DiffOperation{}
	add := func(r *coverage.Report, after bool) {
		for _, op := range r.Operations {
			if op.Hits == 0 {
				continue
			}
			o := ops[op.ID]
			if o == nil || after {
				n := &DiffOperation{ID: op.ID, Method: op.Method, Path: op.Path, Level: string(op.Level),
					Eligibility: string(op.Eligibility), Deprecated: op.Deprecated, Kind: op.Kind}
				if o != nil {
					n.HitsA = o.HitsA
				}
				o = n
				ops[op.ID] = o
			}
			if after {
				o.HitsB = op.Hits
			} else {
				o.HitsA = op.Hits
			}
		}
	}
	add(a, false)
	add(b, true)
	d.Fields = a.Summary.Fields != nil && b.Summary.Fields != nil
	if d.Fields {
		setA, setB := setPaths(a), setPaths(b)
		for id, o := range ops {
			o.FieldsGained = minus(setB[id], setA[id])
			o.FieldsLost = minus(setA[id], setB[id])
			d.FieldsGained += len(o.FieldsGained)
			d.FieldsLost += len(o.FieldsLost)
		}
	}
	for _, o := range ops {
		switch {
		case o.HitsA == 0:
			d.Gained = append(d.Gained, *o)
		case o.HitsB == 0:
			d.Lost = append(d.Lost, *o)
		default:
			d.Both = append(d.Both, *o)
		}
	}
	for _, list := range [][]DiffOperation{d.Gained, d.Lost, d.Both} {
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	}
	return d
}

// setPaths are the field paths each operation's bodies set.
func setPaths(r *coverage.Report) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, op := range r.Operations {
		if op.Fields == nil || len(op.Fields.Set) == 0 {
			continue
		}
		set := make(map[string]bool, len(op.Fields.Set))
		for _, h := range op.Fields.Set {
			set[h.Path] = true
		}
		out[op.ID] = set
	}
	return out
}

// minus returns the keys of a not in b, sorted (nil when none).
func minus(a, b map[string]bool) []string {
	var out []string
	for path := range a {
		if !b[path] {
			out = append(out, path)
		}
	}
	sort.Strings(out)
	return out
}

// WriteDiff renders d as a self-contained page.
func WriteDiff(w io.Writer, p Page, d *Diff) error {
	if d == nil {
		return fmt.Errorf("render HTML diff: no diff")
	}
	if p.Title == "" {
		p.Title = "API coverage: " + d.NameA + " → " + d.NameB
	}
	return write(w, p, config{Kind: "diff"}, d)
}
