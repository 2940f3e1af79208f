package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// openLog opens an audit log; "-" is standard input and .gz files are
// decompressed.
func openLog(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if !strings.HasSuffix(name, ".gz") {
		return f, nil
	}
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open audit log %s: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// loadCatalog returns the catalog of an embedded release, or of an OpenAPI v2
// document (a cluster's /openapi/v2, custom resources included).
func loadCatalog(release, openapiFile string) (*catalog.Catalog, error) {
	if openapiFile == "" {
		return catalog.Load(release)
	}
	doc, err := os.ReadFile(openapiFile)
	if err != nil {
		return nil, fmt.Errorf("read OpenAPI document: %w", err)
	}
	return catalog.FromOpenAPIV2(doc, release)
}

// isTerminal says whether f is a terminal, to show progress only to people.
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// progressPrinter shows lines and events per second on a terminal.
func progressPrinter(name string) func(audit.Stats) {
	if !isTerminal(os.Stderr) {
		return nil
	}
	start := time.Now()
	return func(s audit.Stats) {
		rate := float64(s.Lines) / time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "\r%s: %d lines, %d requests, %d malformed (%.0f lines/s)", name, s.Lines, s.Events, s.Malformed, rate)
	}
}

// malformedWarner prints the first few malformed lines and counts the rest.
func malformedWarner(name string) func(int64, error) {
	shown := 0
	return func(line int64, err error) {
		if shown < 5 {
			fmt.Fprintf(os.Stderr, "warning: %s:%d: skipped: %v\n", name, line, err)
		} else if shown == 5 {
			fmt.Fprintf(os.Stderr, "warning: %s: more malformed lines skipped; the total is reported at the end\n", name)
		}
		shown++
	}
}

// warnMalformedTotal says how many lines were skipped, if any.
func warnMalformedTotal(s audit.Stats) {
	if s.Malformed > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d of %d lines were malformed and skipped\n", s.Malformed, s.Lines)
	}
}
