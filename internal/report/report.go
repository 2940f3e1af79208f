// Package report renders coverage reports as a table for terminals, JSON
// and Markdown.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// Formats lists the output formats Write accepts.
var Formats = []string{"table", "json", "markdown"}

// Options says what a rendering includes.
type Options struct {
	// Untested lists the eligible operations nobody hit.
	Untested bool
	// MaxRows caps the rows of long tables; 0 means all.
	MaxRows int
}

// Write renders r in the named format.
func Write(w io.Writer, format string, r *coverage.Report, opts Options) error {
	switch format {
	case "table", "":
		return Table(w, r, opts)
	case "json":
		return writeJSON(w, r)
	case "markdown", "md":
		return Markdown(w, r, opts)
	}
	return fmt.Errorf("unknown output format %q: use one of %s", format, strings.Join(Formats, ", "))
}

type levelRow struct {
	name string
	l    coverage.LevelSummary
	// fields is the level's field coverage; nil for conformance-tested,
	// which field coverage does not count, and without field data.
	fields *coverage.FieldLevelSummary
}

func levelRows(s coverage.Summary) []levelRow {
	rows := []levelRow{
		{name: "stable", l: s.Stable}, {name: "beta", l: s.Beta}, {name: "alpha", l: s.Alpha},
		{name: "eligible", l: s.Eligible}, {name: "conformance-tested", l: s.ConformanceHit},
	}
	if f := s.Fields; f != nil {
		rows[0].fields, rows[1].fields, rows[2].fields, rows[3].fields = &f.Stable, &f.Beta, &f.Alpha, &f.Eligible
	}
	return rows
}

// Table renders r for a terminal.
func Table(w io.Writer, r *coverage.Report, opts Options) error {
	s := r.Summary
	fmt.Fprintf(w, "Kubernetes %s: %d requests, %d failed, %d unknown\n\n", s.Release, s.Requests, s.FailedRequests, s.UnknownRequests)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if s.Fields == nil {
		fmt.Fprintln(tw, "LEVEL\tHIT\tOPERATIONS\tCOVERAGE")
		for _, row := range levelRows(s) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\n", row.name, row.l.Hit, row.l.Operations, row.l.Percent)
		}
	} else {
		fmt.Fprintln(tw, "LEVEL\tHIT\tOPERATIONS\tCOVERAGE\tFIELDS HIT / IN SCHEMA")
		for _, row := range levelRows(s) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\t%s\n", row.name, row.l.Hit, row.l.Operations, row.l.Percent, fieldLevel(s.Fields, row.fields))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.Fields != nil {
		fmt.Fprintf(w, "\n%s\n", bodiesLine(r))
	}

	hit := r.Hit()
	if len(hit) > 0 {
		fmt.Fprintf(w, "\nOperations hit (%d):\n", len(hit))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HITS\tLEVEL\tOPERATION\tVERBS\tSTATUS")
		for i, op := range hit {
			if opts.MaxRows > 0 && i >= opts.MaxRows {
				fmt.Fprintf(tw, "...\t\t%d more\t\t\n", len(hit)-i)
				break
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", op.Hits, levelOf(op), op.ID, counts(op.ByVerb), counts(op.ByStatus))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Unknown) > 0 {
		fmt.Fprintf(w, "\nUnknown to Kubernetes %s (%d shapes):\n", s.Release, len(r.Unknown))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUESTS\tREQUEST\tSTATUS")
		for i, u := range r.Unknown {
			if opts.MaxRows > 0 && i >= opts.MaxRows {
				fmt.Fprintf(tw, "...\t%d more\t\n", len(r.Unknown)-i)
				break
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\n", u.Requests, u.Shape, counts(u.ByStatus))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := fieldTables(w, r, opts); err != nil {
		return err
	}
	if opts.Untested && len(r.Untested) > 0 {
		fmt.Fprintf(w, "\nEligible operations not hit (%d):\n", len(r.Untested))
		byID := operationsByID(r)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, id := range r.Untested {
			op := byID[id]
			fmt.Fprintf(tw, "%s\t%s\t%s\n", id, op.Method, op.Path)
		}
		return tw.Flush()
	}
	return nil
}

// Markdown renders r as GitHub-flavoured Markdown.
func Markdown(w io.Writer, r *coverage.Report, opts Options) error {
	s := r.Summary
	fmt.Fprintf(w, "# API coverage of Kubernetes %s\n\n", s.Release)
	fmt.Fprintf(w, "%d requests, %d failed, %d unknown to the release.\n\n", s.Requests, s.FailedRequests, s.UnknownRequests)
	if s.Fields == nil {
		fmt.Fprintln(w, "| level | hit | operations | coverage |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
		for _, row := range levelRows(s) {
			fmt.Fprintf(w, "| %s | %d | %d | %.1f%% |\n", row.name, row.l.Hit, row.l.Operations, row.l.Percent)
		}
	} else {
		fmt.Fprintln(w, "| level | hit | operations | coverage | fields hit / in schema |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
		for _, row := range levelRows(s) {
			fmt.Fprintf(w, "| %s | %d | %d | %.1f%% | %s |\n", row.name, row.l.Hit, row.l.Operations, row.l.Percent, fieldLevel(s.Fields, row.fields))
		}
		fmt.Fprintf(w, "\n%s\n", bodiesLine(r))
	}
	if hit := r.Hit(); len(hit) > 0 {
		fmt.Fprintf(w, "\n## Operations hit (%d)\n\n", len(hit))
		fmt.Fprintln(w, "| hits | level | operation | method | path | status |")
		fmt.Fprintln(w, "|---:|---|---|---|---|---|")
		for i, op := range hit {
			if opts.MaxRows > 0 && i >= opts.MaxRows {
				fmt.Fprintf(w, "| | | %d more | | | |\n", len(hit)-i)
				break
			}
			fmt.Fprintf(w, "| %d | %s | `%s` | %s | `%s` | %s |\n", op.Hits, levelOf(op), op.ID, op.Method, op.Path, counts(op.ByStatus))
		}
	}
	if len(r.Unknown) > 0 {
		fmt.Fprintf(w, "\n## Unknown to Kubernetes %s\n\n", s.Release)
		fmt.Fprintln(w, "| requests | request | status |")
		fmt.Fprintln(w, "|---:|---|---|")
		for _, u := range r.Unknown {
			fmt.Fprintf(w, "| %d | `%s` | %s |\n", u.Requests, u.Shape, counts(u.ByStatus))
		}
	}
	fieldMarkdown(w, r, opts)
	if opts.Untested && len(r.Untested) > 0 {
		fmt.Fprintf(w, "\n## Eligible operations not hit (%d)\n\n", len(r.Untested))
		byID := operationsByID(r)
		for _, id := range r.Untested {
			op := byID[id]
			fmt.Fprintf(w, "- `%s` %s `%s`\n", id, op.Method, op.Path)
		}
	}
	return nil
}

func levelOf(op coverage.OperationReport) string {
	return LevelLabel(string(op.Level), op.Eligibility, op.Deprecated)
}

// LevelLabel is how reports print an operation's level: with
// "(deprecated)" or else, for one conformance counts, "(eligible)".
func LevelLabel(level string, eligibility catalog.Eligibility, deprecated bool) string {
	switch {
	case deprecated:
		return level + " (deprecated)"
	case eligibility == catalog.Eligible:
		return level + " (eligible)"
	}
	return level
}

func operationsByID(r *coverage.Report) map[string]coverage.OperationReport {
	m := make(map[string]coverage.OperationReport, len(r.Operations))
	for _, op := range r.Operations {
		m[op.ID] = op
	}
	return m
}

// counts renders a small count map as "get=3 list=1", sorted by key.
func counts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
