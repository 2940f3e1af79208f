package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

func newCoverageCommand() *cobra.Command {
	var (
		logs            []string
		release, output string
		openapiFile     string
		untested        bool
		maxRows         int
	)
	cmd := &cobra.Command{
		Use:   "coverage --audit-log FILE... [--release 1.37] [-o table|json|markdown]",
		Short: "Measure API coverage from API server audit logs",
		Long: `Reads API server audit logs (audit.k8s.io/v1 JSON lines, .gz too, "-" for
standard input), matches every request against a Kubernetes release's API and
prints coverage per level and the eligible operations no request hit.
Malformed lines are counted and skipped.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(logs) == 0 {
				return fmt.Errorf("--audit-log is required")
			}
			cat, err := loadCatalog(release, openapiFile)
			if err != nil {
				return err
			}
			m := match.New(cat)
			delta := &coverage.Delta{}
			var total audit.Stats
			for _, name := range logs {
				f, err := openLog(name)
				if err != nil {
					return err
				}
				progress := progressPrinter(name)
				stats, err := audit.Analyze(f, m, delta, progress, malformedWarner(name))
				f.Close()
				if progress != nil {
					progress(stats)
					fmt.Fprintln(os.Stderr)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				total.Lines += stats.Lines
				total.Malformed += stats.Malformed
			}
			warnMalformedTotal(total)
			return report.Write(cmd.OutOrStdout(), output, coverage.NewReport(cat, delta), report.Options{Untested: untested, MaxRows: maxRows})
		},
	}
	cmd.Flags().StringArrayVar(&logs, "audit-log", nil, "audit log file (repeatable; .gz, or - for standard input)")
	cmd.Flags().StringVar(&release, "release", "1.37", "Kubernetes release to measure against (1.31 to 1.37)")
	cmd.Flags().StringVar(&openapiFile, "openapi", "", "measure against this OpenAPI v2 document (a cluster's /openapi/v2) instead of an embedded release")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or markdown")
	cmd.Flags().BoolVar(&untested, "untested", true, "list the eligible operations no request hit")
	cmd.Flags().IntVar(&maxRows, "max-rows", 0, "cap long tables at this many rows (0: all)")
	return cmd
}
