package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

func newDiffCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "diff A.json B.json [-o table|html]",
		Short: "Show the operations gained and lost between two coverage results",
		Long: `Compares two coverage results written with -o json (by coverage, record or
report): the hits per level on each side, the operations hit in B and not in
A (gained) and those hit in A and not in B (lost). When both results have
field coverage (request bodies were read), it also lists per operation the
field paths the bodies of B set and those of A did not (+), and the reverse
(-). A is the before, B the after: two test runs, or two releases of an
add-on.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "html" {
				return fmt.Errorf("unknown output format %q: use table or html", output)
			}
			a, err := readReport(args[0])
			if err != nil {
				return err
			}
			b, err := readReport(args[1])
			if err != nil {
				return err
			}
			d := htmlreport.NewDiff(args[0], a, args[1], b)
			if output == "html" {
				return htmlreport.WriteDiff(cmd.OutOrStdout(), htmlreport.Page{Source: args[0] + " → " + args[1], Generated: time.Now()}, d)
			}
			return writeDiffTable(cmd.OutOrStdout(), d)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or html (one self-contained page)")
	return cmd
}

// readReport reads a coverage result as -o json writes it.
func readReport(name string) (*coverage.Report, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read coverage result: %w", err)
	}
	r := &coverage.Report{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("read coverage result %s: not a JSON coverage report (write one with -o json): %w", name, err)
	}
	if r.Summary.Release == "" || len(r.Operations) == 0 {
		return nil, fmt.Errorf("read coverage result %s: not a JSON coverage report (no release or operations; write one with -o json)", name)
	}
	return r, nil
}

func writeDiffTable(w io.Writer, d *htmlreport.Diff) error {
	fmt.Fprintf(w, "A: %s (Kubernetes %s)\nB: %s (Kubernetes %s)\n\n", d.NameA, d.ReleaseA, d.NameB, d.ReleaseB)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEVEL\tHIT A\tHIT B\tCHANGE\tOPERATIONS B")
	for _, l := range d.Levels {
		name := l.Level
		if name == "conformanceHit" {
			name = "conformance-tested"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%+d\t%d\n", name, l.HitA, l.HitB, l.HitB-l.HitA, l.OperationsB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d operations gained, %d lost, %d hit in both.\n", len(d.Gained), len(d.Lost), len(d.Both))
	for _, part := range []struct {
		title string
		ops   []htmlreport.DiffOperation
	}{{"Gained (hit in B, not in A)", d.Gained}, {"Lost (hit in A, not in B)", d.Lost}} {
		if len(part.ops) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", part.title)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HITS A\tHITS B\tLEVEL\tOPERATION\tMETHOD\tPATH")
		for _, op := range part.ops {
			level := report.LevelLabel(op.Level, catalog.Eligibility(op.Eligibility), op.Deprecated)
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", op.HitsA, op.HitsB, level, op.ID, op.Method, op.Path)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return writeFieldDiff(w, d)
}

// writeFieldDiff lists per operation the field paths gained (+) and lost
// (-), when both results have field data.
func writeFieldDiff(w io.Writer, d *htmlreport.Diff) error {
	if !d.Fields {
		return nil
	}
	fmt.Fprintf(w, "\nFields: %d field paths gained (set by B's request bodies, not A's), %d lost.\n", d.FieldsGained, d.FieldsLost)
	for _, part := range [][]htmlreport.DiffOperation{d.Gained, d.Lost, d.Both} {
		for _, op := range part {
			if len(op.FieldsGained)+len(op.FieldsLost) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n%s: %d gained, %d lost\n", op.ID, len(op.FieldsGained), len(op.FieldsLost))
			for _, path := range op.FieldsGained {
				fmt.Fprintf(w, "  + %s\n", path)
			}
			for _, path := range op.FieldsLost {
				fmt.Fprintf(w, "  - %s\n", path)
			}
		}
	}
	return nil
}
