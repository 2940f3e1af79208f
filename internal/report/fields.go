package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// fieldLevel renders a level's field coverage as "hit / in schema
// (percent)"; "-" for a level field coverage does not count and when the
// catalog had no body schemas (nothing to count against).
func fieldLevel(fs *coverage.FieldSummary, l *coverage.FieldLevelSummary) string {
	if l == nil || !fs.Schemas {
		return "-"
	}
	return fmt.Sprintf("%d / %d (%.1f%%)", l.Hit, l.InSchema, l.Percent)
}

// fieldOperations returns the operations some request body was seen for,
// most bodies first. Operations that take a body but got none have a
// FieldReport too (0 hit); they are only counted, in idle, as a terminal
// or Markdown list of hundreds of zeros says little.
func fieldOperations(r *coverage.Report) (seen []coverage.OperationReport, idle int) {
	for _, op := range r.Operations {
		switch {
		case op.Fields == nil:
		case op.Fields.Bodies > 0:
			seen = append(seen, op)
		default:
			idle++
		}
	}
	sort.SliceStable(seen, func(i, j int) bool {
		if seen[i].Fields.Bodies != seen[j].Fields.Bodies {
			return seen[i].Fields.Bodies > seen[j].Fields.Bodies
		}
		return seen[i].ID < seen[j].ID
	})
	return seen, idle
}

// bodiesLine says how many bodies field coverage read.
func bodiesLine(r *coverage.Report) string {
	fs := r.Summary.Fields
	seen, _ := fieldOperations(r)
	var overflow int64
	for _, op := range seen {
		overflow += op.Fields.Overflow
	}
	line := fmt.Sprintf("Field coverage: %s of %s", plural(fs.Bodies, "request body", "request bodies"), plural(int64(len(seen)), "operation", "operations"))
	if fs.Malformed > 0 {
		line += fmt.Sprintf(", %d malformed", fs.Malformed)
	}
	if overflow > 0 {
		line += fmt.Sprintf(", %d field paths beyond the bounds not kept", overflow)
	}
	if !fs.Schemas {
		line += "; no body schemas for Kubernetes " + r.Summary.Release + ", so fields in schema are not known"
	}
	return line + "."
}

func bodiesCell(f *coverage.FieldReport) string {
	if f.Malformed > 0 {
		return fmt.Sprintf("%d (%d malformed)", f.Bodies, f.Malformed)
	}
	return strconv.FormatInt(f.Bodies, 10)
}

func fieldPercent(f *coverage.FieldReport) string {
	if f.InSchema == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", f.Percent)
}

// fieldProblem is one unknown or ill-typed field path of an operation.
type fieldProblem struct {
	op, kind, path string
	bodies         int64
}

// fieldProblems lists the unknown and ill-typed paths of ops, those most
// bodies had first.
func fieldProblems(ops []coverage.OperationReport) []fieldProblem {
	var out []fieldProblem
	for _, op := range ops {
		for _, h := range op.Fields.Unknown {
			out = append(out, fieldProblem{op.ID, "unknown", h.Path, h.Count})
		}
		for _, h := range op.Fields.IllTyped {
			out = append(out, fieldProblem{op.ID, "ill-typed", h.Path, h.Count})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.bodies != b.bodies {
			return a.bodies > b.bodies
		}
		if a.op != b.op {
			return a.op < b.op
		}
		if a.kind != b.kind {
			return a.kind > b.kind // unknown before ill-typed
		}
		return a.path < b.path
	})
	return out
}

// printable quotes s (Go syntax) when it holds a character a terminal or a
// table would not show as itself: unknown field names come from request
// bodies, and a tab or newline in one would break the columns.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// mdCode renders s as a Markdown code span inside a table cell: fenced by
// more backticks than it holds in a row, its pipes escaped (GitHub reads
// \| in a code span in a table as |).
func mdCode(s string) string {
	s = strings.ReplaceAll(printable(s), "|", `\|`)
	run, longest := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// fieldTables writes the terminal's field coverage sections: the
// operations bodies were seen for, and their unknown and ill-typed paths.
func fieldTables(w io.Writer, r *coverage.Report, opts Options) error {
	if r.Summary.Fields == nil {
		return nil
	}
	seen, idle := fieldOperations(r)
	if len(seen) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nField coverage (%d operations with request bodies; %d more take a body, none seen):\n", len(seen), idle)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BODIES\tLEVEL\tOPERATION\tFIELDS HIT / IN SCHEMA\tCOVERAGE\tUNKNOWN\tILL-TYPED")
	for i, op := range seen {
		if opts.MaxRows > 0 && i >= opts.MaxRows {
			fmt.Fprintf(tw, "...\t\t%d more\t\t\t\t\n", len(seen)-i)
			break
		}
		f := op.Fields
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d / %d\t%s\t%d\t%d\n", bodiesCell(f), levelOf(op), op.ID, f.Hit, f.InSchema, fieldPercent(f), len(f.Unknown), len(f.IllTyped))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	problems := fieldProblems(seen)
	if len(problems) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nUnknown and ill-typed fields (%d):\n", len(problems))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BODIES\tKIND\tOPERATION\tPATH")
	for i, p := range problems {
		if opts.MaxRows > 0 && i >= opts.MaxRows {
			fmt.Fprintf(tw, "...\t\t%d more\t\n", len(problems)-i)
			break
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.bodies, p.kind, p.op, printable(p.path))
	}
	return tw.Flush()
}

// fieldMarkdown writes the Markdown field coverage sections, as fieldTables.
func fieldMarkdown(w io.Writer, r *coverage.Report, opts Options) {
	if r.Summary.Fields == nil {
		return
	}
	seen, idle := fieldOperations(r)
	if len(seen) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Field coverage (%d)\n\n", len(seen))
	fmt.Fprintf(w, "Operations with request bodies; %d more take a body, none seen.\n\n", idle)
	fmt.Fprintln(w, "| bodies | level | operation | fields hit / in schema | coverage | unknown | ill-typed |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|---:|---:|")
	for i, op := range seen {
		if opts.MaxRows > 0 && i >= opts.MaxRows {
			fmt.Fprintf(w, "| | | %d more | | | | |\n", len(seen)-i)
			break
		}
		f := op.Fields
		fmt.Fprintf(w, "| %s | %s | `%s` | %d / %d | %s | %d | %d |\n", bodiesCell(f), levelOf(op), op.ID, f.Hit, f.InSchema, fieldPercent(f), len(f.Unknown), len(f.IllTyped))
	}
	problems := fieldProblems(seen)
	if len(problems) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Unknown and ill-typed fields (%d)\n\n", len(problems))
	fmt.Fprintln(w, "| bodies | kind | operation | path |")
	fmt.Fprintln(w, "|---:|---|---|---|")
	for i, p := range problems {
		if opts.MaxRows > 0 && i >= opts.MaxRows {
			fmt.Fprintf(w, "| | | %d more | |\n", len(problems)-i)
			break
		}
		fmt.Fprintf(w, "| %d | %s | `%s` | %s |\n", p.bodies, p.kind, p.op, mdCode(p.path))
	}
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
