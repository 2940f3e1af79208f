package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// auditLogHelp tells how audit logs are read, for --help.
var auditLogHelp = fmt.Sprintf(`Audit logs are audit.k8s.io/v1 JSON lines, plain or .gz, "-" for standard
input. They are decoded in parallel on every core, several files at once, and
read as one log in the order given: give rotated files oldest first.

Each request counts once, however its stages arrive: at its ResponseComplete
or Panic event, or at its ResponseStarted when the log ends while it is still
open (a watch). Requests still open are held until their final stage, however
long they last (%[1]s at most; beyond, the oldest count at once). A stage
seen again after its request counted (overlapping files, a retried webhook
batch) or out of order (ResponseStarted after ResponseComplete) is recognized
while the request is among the last %[2]s to %[3]s requests counted: the
window of audit IDs kept, %[4]d MB at most. A request seen only at
RequestReceived is not counted (the log was cut before the API server
answered it); their number is reported. An event with an empty verb is a
request with a method the API server does not know: it counts as unknown,
with the method shown as %[5]q. Malformed lines are counted and skipped.`,
	thousands(audit.DefaultMaxOpen), thousands(audit.DefaultWindow/2), thousands(audit.DefaultWindow),
	audit.DefaultWindow*2*16>>20, audit.UnknownMethod)

// thousands writes n with thousands separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// logSource is an audit log to read: a file, .gz decompressed, or "-" for
// standard input.
func logSource(name string) audit.Source {
	src := audit.Source{Name: name, Open: func() (io.ReadCloser, error) { return openLog(name) }}
	if name != "-" && !strings.HasSuffix(name, ".gz") {
		if info, err := os.Stat(name); err == nil && info.Mode().IsRegular() {
			src.Size = info.Size()
		}
	}
	return src
}

func logSources(names []string) []audit.Source {
	sources := make([]audit.Source, len(names))
	for i, name := range names {
		sources[i] = logSource(name)
	}
	return sources
}

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
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
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

// progressPrinter shows how far reading got on a terminal, on one line.
func progressPrinter() func(audit.Progress) {
	if !isTerminal(os.Stderr) {
		return nil
	}
	return func(p audit.Progress) {
		s := p.Stats
		done := ""
		if p.Size > 0 {
			done = fmt.Sprintf(" %3.0f%%", 100*float64(p.Bytes)/float64(p.Size))
		}
		rate := float64(s.Lines) / max(p.Elapsed.Seconds(), 1e-3)
		fmt.Fprintf(os.Stderr, "\r\033[K%s:%s %d lines, %d requests, %d malformed (%.0f lines/s)", p.Source, done, s.Lines, s.Requests, s.Malformed, rate)
		if p.Done {
			fmt.Fprintln(os.Stderr)
		}
	}
}

// malformedWarner prints the first few malformed lines and counts the rest.
func malformedWarner() func(string, int64, error) {
	var mu sync.Mutex
	shown := 0
	return func(name string, line int64, err error) {
		mu.Lock()
		defer mu.Unlock()
		if shown < 5 {
			fmt.Fprintf(os.Stderr, "warning: %s:%d: skipped: %v\n", name, line, err)
		} else if shown == 5 {
			fmt.Fprintf(os.Stderr, "warning: more malformed lines skipped; the total is reported at the end\n")
		}
		shown++
	}
}

// warnTotals says how many lines were skipped and requests not counted.
func warnTotals(s audit.Stats) {
	if s.Malformed > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d of %d lines were malformed and skipped\n", s.Malformed, s.Lines)
	}
	if s.Incomplete > 0 {
		fmt.Fprintf(os.Stderr, "note: %d requests logged only at RequestReceived (the log ends before their response) are not counted\n", s.Incomplete)
	}
}
