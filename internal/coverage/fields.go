package coverage

import (
	"sort"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

// Bounds of the field paths a Delta keeps. Paths of built-in schemas are
// bounded by the schemas (at most about 1,700 per operation), but unknown
// fields, the free keys of custom resources that keep unknown fields and
// recursive schemas are not. Bodies beyond a bound still count in Bodies;
// the paths not kept count in FieldCounts.Overflow.
const (
	// MaxSetFields bounds the set paths kept per operation.
	MaxSetFields = 10000
	// MaxUnknownFields bounds the unknown paths, and separately the
	// ill-typed paths, kept per operation.
	MaxUnknownFields = 200
	// MaxFieldEntries bounds the paths kept over all operations, so that an
	// encoded delta stays well within its decoding bound.
	MaxFieldEntries = 200000
)

// FieldCounts is what the request bodies of one operation set.
type FieldCounts struct {
	// Bodies counts the bodies seen, Malformed those of them that could not
	// be read (not JSON of their kind) and so set nothing.
	Bodies    int64 `json:"bodies"`
	Malformed int64 `json:"malformed,omitempty"`
	// Set, Unknown and IllTyped count, per field path (catalog field path
	// syntax), the bodies that set it, that used it without the schema
	// knowing it, and that gave it a value not fitting the schema (see
	// package fields).
	Set      map[string]int64 `json:"set,omitempty"`
	Unknown  map[string]int64 `json:"unknown,omitempty"`
	IllTyped map[string]int64 `json:"illTyped,omitempty"`
	// Overflow counts path occurrences not kept because of the bounds.
	Overflow int64 `json:"overflow,omitempty"`
}

// AddFields counts n bodies of an operation whose walk (fields.Walker) gave
// r. Bodies of unknown requests (operationID empty) are not counted.
func (d *Delta) AddFields(operationID string, r fields.Result, n int64) {
	if operationID == "" || n <= 0 {
		return
	}
	fc := boundedEntry(&d.Fields, operationID, -1)
	fc.Bodies += n
	for _, path := range r.Set {
		d.addFieldPath(fc, &fc.Set, path, n, MaxSetFields)
	}
	for _, path := range r.Unknown {
		d.addFieldPath(fc, &fc.Unknown, path, n, MaxUnknownFields)
	}
	for _, path := range r.IllTyped {
		d.addFieldPath(fc, &fc.IllTyped, path, n, MaxUnknownFields)
	}
}

// AddFieldsDropped is AddFields for bodies whose result lost dropped paths
// that the collector would refuse (intake.DropInvalidFieldPaths): they
// count as overflow.
func (d *Delta) AddFieldsDropped(operationID string, r fields.Result, dropped, n int64) {
	d.AddFields(operationID, r, n)
	if dropped <= 0 {
		return
	}
	if fc := d.Fields[operationID]; fc != nil {
		fc.Overflow += dropped * n
	}
}

// AddMalformedBodies counts n bodies of an operation that could not be
// walked (the walker's error wraps fields.ErrMalformed).
func (d *Delta) AddMalformedBodies(operationID string, n int64) {
	if operationID == "" || n <= 0 {
		return
	}
	fc := boundedEntry(&d.Fields, operationID, -1)
	fc.Bodies += n
	fc.Malformed += n
}

// addFieldPath adds n to a path's count, creating the entry within the
// operation's bound max and the delta's MaxFieldEntries.
func (d *Delta) addFieldPath(fc *FieldCounts, m *map[string]int64, path string, n int64, max int) {
	if _, ok := (*m)[path]; ok {
		(*m)[path] += n
		return
	}
	if len(*m) >= max || d.fieldEntries >= MaxFieldEntries {
		fc.Overflow += n
		return
	}
	if *m == nil {
		*m = make(map[string]int64)
	}
	(*m)[path] = n
	d.fieldEntries++
}

// mergeFields adds o's field counts to d's.
func (d *Delta) mergeFields(o *Delta) {
	for id, theirs := range o.Fields {
		if theirs == nil {
			continue // a decoded null; package intake refuses such deltas
		}
		mine := boundedEntry(&d.Fields, id, -1)
		mine.Bodies += theirs.Bodies
		mine.Malformed += theirs.Malformed
		mine.Overflow += theirs.Overflow
		d.mergeFieldPaths(mine, &mine.Set, theirs.Set, MaxSetFields)
		d.mergeFieldPaths(mine, &mine.Unknown, theirs.Unknown, MaxUnknownFields)
		d.mergeFieldPaths(mine, &mine.IllTyped, theirs.IllTyped, MaxUnknownFields)
	}
}

// mergeFieldPaths adds the counts of theirs to *m. Near a bound the paths go
// in sorted order, so that which are kept does not depend on map order.
func (d *Delta) mergeFieldPaths(fc *FieldCounts, m *map[string]int64, theirs map[string]int64, max int) {
	if len(*m)+len(theirs) <= max && d.fieldEntries+len(theirs) <= MaxFieldEntries {
		for path, n := range theirs {
			d.addFieldPath(fc, m, path, n, max)
		}
		return
	}
	for _, path := range sortedKeys(theirs) {
		d.addFieldPath(fc, m, path, theirs[path], max)
	}
}

// countFieldEntries recomputes the paths held, after decoding.
func (d *Delta) countFieldEntries() {
	d.fieldEntries = 0
	for _, fc := range d.Fields {
		if fc != nil {
			d.fieldEntries += len(fc.Set) + len(fc.Unknown) + len(fc.IllTyped)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

// FieldHit is one field path with the number of bodies that set it (or
// used it unknown, or gave it an ill-typed value).
type FieldHit struct {
	Path  string `json:"path"`
	Count int64  `json:"count"`
	// NotInSchema marks a set path that is not one of the schema's field
	// paths (catalog.Schemas.FieldPaths): a free key of an object that
	// keeps unknown fields, or a path deeper into a recursive type than
	// the schema's paths go. It does not count in FieldReport.Hit.
	NotInSchema bool `json:"notInSchema,omitempty"`
}

// FieldReport is the field coverage of one operation's request bodies.
type FieldReport struct {
	// InSchema counts the field paths of the operation's body schema, Hit
	// those of them some body set; Percent is Hit over InSchema. InSchema is
	// 0 when the catalog has no schemas.
	InSchema int     `json:"inSchema"`
	Hit      int     `json:"hit"`
	Percent  float64 `json:"percent"`
	// Bodies, Malformed and Overflow are those of FieldCounts.
	Bodies    int64 `json:"bodies,omitempty"`
	Malformed int64 `json:"malformed,omitempty"`
	Overflow  int64 `json:"overflow,omitempty"`
	// Set, Unknown and IllTyped are the paths, sorted.
	Set      []FieldHit `json:"set,omitempty"`
	Unknown  []FieldHit `json:"unknown,omitempty"`
	IllTyped []FieldHit `json:"illTyped,omitempty"`
}

// FieldLevelSummary totals field coverage over the operations of one level
// that take a body.
type FieldLevelSummary struct {
	// Operations counts the operations taking a body (with a schema, or
	// with bodies seen).
	Operations int     `json:"operations"`
	InSchema   int     `json:"inSchema"`
	Hit        int     `json:"hit"`
	Percent    float64 `json:"percent"`
	Bodies     int64   `json:"bodies"`
}

func (l *FieldLevelSummary) add(fr *FieldReport) {
	l.Operations++
	l.InSchema += fr.InSchema
	l.Hit += fr.Hit
	l.Bodies += fr.Bodies
}

func (l *FieldLevelSummary) finish() {
	if l.InSchema > 0 {
		l.Percent = float64(l.Hit) * 100 / float64(l.InSchema)
	}
}

// FieldSummary is the headline of field coverage, by level as Summary counts
// operations: Stable, Beta and Alpha over operations that are not
// deprecated, Eligible over the eligible ones.
type FieldSummary struct {
	// Schemas says whether the catalog had body schemas; without them only
	// the paths bodies set are known, not how many there are.
	Schemas   bool              `json:"schemas"`
	Bodies    int64             `json:"bodies"`
	Malformed int64             `json:"malformed,omitempty"`
	Stable    FieldLevelSummary `json:"stable"`
	Beta      FieldLevelSummary `json:"beta"`
	Alpha     FieldLevelSummary `json:"alpha"`
	Eligible  FieldLevelSummary `json:"eligible"`
}

// addFieldCoverage fills the field coverage of a report whose delta holds
// field counts: every operation taking a body gets a FieldReport, and the
// summary its FieldSummary. A delta without field counts (no body was
// recorded) leaves the report as it was, without loading schemas.
func addFieldCoverage(r *Report, c *catalog.Catalog, d *Delta) {
	if len(d.Fields) == 0 {
		return
	}
	schemas, err := c.Schemas()
	if err != nil {
		schemas = nil
	}
	fs := &FieldSummary{Schemas: schemas != nil}
	for i := range r.Operations {
		row := &r.Operations[i]
		counts := d.Fields[row.ID] // nil when absent or a decoded null
		inSchema := 0
		if schemas != nil {
			inSchema = schemas.FieldCount(row.ID)
		}
		if counts == nil && inSchema == 0 {
			continue
		}
		fr := &FieldReport{InSchema: inSchema}
		if counts != nil {
			fr.Bodies, fr.Malformed, fr.Overflow = counts.Bodies, counts.Malformed, counts.Overflow
			fr.Set = fieldHits(counts.Set)
			for j := range fr.Set {
				if schemas != nil && schemas.HasFieldPath(row.ID, fr.Set[j].Path) {
					fr.Hit++
				} else {
					fr.Set[j].NotInSchema = true
				}
			}
			fr.Unknown = fieldHits(counts.Unknown)
			fr.IllTyped = fieldHits(counts.IllTyped)
		}
		if fr.InSchema > 0 {
			fr.Percent = float64(fr.Hit) * 100 / float64(fr.InSchema)
		}
		row.Fields = fr
		fs.Bodies += fr.Bodies
		fs.Malformed += fr.Malformed
		switch {
		case row.Deprecated:
		case row.Level == catalog.Stable:
			fs.Stable.add(fr)
		case row.Level == catalog.Beta:
			fs.Beta.add(fr)
		default:
			fs.Alpha.add(fr)
		}
		if row.Eligibility == catalog.Eligible {
			fs.Eligible.add(fr)
		}
	}
	for _, l := range []*FieldLevelSummary{&fs.Stable, &fs.Beta, &fs.Alpha, &fs.Eligible} {
		l.finish()
	}
	r.Summary.Fields = fs
}

func fieldHits(m map[string]int64) []FieldHit {
	if len(m) == 0 {
		return nil
	}
	hits := make([]FieldHit, 0, len(m))
	for _, path := range sortedKeys(m) {
		hits = append(hits, FieldHit{Path: path, Count: m[path]})
	}
	return hits
}
