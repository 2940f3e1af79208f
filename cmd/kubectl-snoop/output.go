package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

// outputFormats are report.Formats and html. HTML is kubectl-snoop's (and
// the manager's live page's), not report's: report is linked into the
// sidecar, which would carry the page's charting library and html/template
// into every recorded pod.
var outputFormats = append(slices.Clone(report.Formats), "html")

// checkOutput refuses an unknown format before any work is done.
func checkOutput(format string) error {
	if slices.Contains(outputFormats, format) || format == "md" {
		return nil
	}
	return fmt.Errorf("unknown output format %q: use one of %s", format, strings.Join(outputFormats, ", "))
}

// writeReport renders r in format; source says where the requests came from
// (the audit logs, the command recorded, the session), for the HTML page's
// heading. HTML always lists every row and the untested operations.
func writeReport(w io.Writer, format string, r *coverage.Report, opts report.Options, source string) error {
	if format == "html" {
		return htmlreport.Write(w, htmlreport.Page{Source: source, Generated: time.Now()}, r)
	}
	return report.Write(w, format, r, opts)
}
