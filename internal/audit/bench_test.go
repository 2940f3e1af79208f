package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// benchEvents is the size of the generated log; AUDIT_BENCH_EVENTS changes it.
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("AUDIT_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

var (
	benchLogOnce sync.Once
	benchLog     string
	benchLines   int
)

// TestMain removes the generated log (about 0.9 GB) when the run ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchLog != "" {
		os.RemoveAll(filepath.Dir(benchLog))
	}
	os.Exit(code)
}

// generatedLog writes a realistic Metadata-level audit log once per run.
func generatedLog(b *testing.B) (string, int) {
	benchLogOnce.Do(func() {
		dir, err := os.MkdirTemp("", "apisnoop-audit-bench")
		if err != nil {
			b.Fatal(err)
		}
		benchLog = filepath.Join(dir, "audit.log")
		f, err := os.Create(benchLog)
		if err != nil {
			b.Fatal(err)
		}
		if err := auditgen.Write(f, benchEvents()); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		benchLines = benchEvents()
	})
	if benchLog == "" {
		b.Fatal("no generated log")
	}
	return benchLog, benchLines
}

func reportThroughput(b *testing.B, lines int, size int64) {
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(lines)*float64(b.N)/secs, "events/s")
	b.ReportMetric(float64(size)*float64(b.N)/secs/(1<<20), "MiB/s")
}

// BenchmarkAnalyze is kubectl-snoop coverage's work: read, deduplicate,
// match and aggregate every event of the generated log, on all cores.
func BenchmarkAnalyze(b *testing.B) {
	path, lines := generatedLog(b)
	info, _ := os.Stat(path)
	cat, err := catalog.Load("1.37")
	if err != nil {
		b.Fatal(err)
	}
	m := match.New(cat)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var d coverage.Delta
		stats, err := Analyze(f, m, &d, nil, nil)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if stats.Requests != int64(lines) || d.Requests != int64(lines) {
			b.Fatalf("counted %d requests, delta %d, want %d", stats.Requests, d.Requests, lines)
		}
	}
	reportThroughput(b, lines, info.Size())
}

// BenchmarkDecode is the decoder alone, on one core.
func BenchmarkDecode(b *testing.B) {
	path, lines := generatedLog(b)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var (
			d  decoder
			ev Event
			n  int
		)
		for rest := data; len(rest) > 0; {
			nl := bytes.IndexByte(rest, '\n')
			if err := d.decode(rest[:nl], &ev); err != nil {
				b.Fatal(err)
			}
			rest = rest[nl+1:]
			n++
		}
		if n != lines || d.slow != 0 {
			b.Fatalf("decoded %d lines (%d by encoding/json), want %d", n, d.slow, lines)
		}
	}
	reportThroughput(b, lines, int64(len(data)))
}

// BenchmarkPlainDecode is the baseline: decode every line of the same log
// into the API server's own audit Event type with encoding/json, nothing else.
func BenchmarkPlainDecode(b *testing.B) {
	path, lines := generatedLog(b)
	info, _ := os.Stat(path)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReaderSize(f, 256<<10)
		n := 0
		for {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			var ev auditv1.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				b.Fatal(err)
			}
			n++
		}
		f.Close()
		if n != lines {
			b.Fatalf("decoded %d lines, want %d", n, lines)
		}
	}
	reportThroughput(b, lines, info.Size())
}
