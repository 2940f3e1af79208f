package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// mixedLog is a generated log with more clients than a Delta keeps,
// malformed lines, blank lines, a line longer than maxLine, repeated
// events, and no newline at the end.
func mixedLog(t *testing.T) []byte {
	t.Helper()
	var gen bytes.Buffer
	if err := auditgen.Write(&gen, 12000); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for i, line := range lines(gen.Bytes()) {
		line = bytes.Replace(line, []byte(`"username":"system:serviceaccount:`), fmt.Appendf(nil, `"username":"u-%d-`, i%7000), 1)
		b.Write(line)
		b.WriteByte('\n')
		switch i % 1000 {
		case 10:
			b.WriteString("not json\n\n")
		case 20:
			b.Write(line) // a repeated event
			b.WriteByte('\n')
		case 30:
			b.WriteString(received + "\n" + panicked + "\n")
		case 40: // whitespace around lines, CRLF, a line cut in two
			b.WriteString("  " + watchStarted + " \t\r\n\v" + watchComplete + "\u00a0\n")
			b.WriteString(`{"kind":"Event","auditID":"cut",` + "\n" + `"stage":"ResponseComplete","verb":"get","requestURI":"/version"}` + "\n")
		}
		if i == 5000 {
			b.WriteString(`{"kind":"Event","auditID":"x","stage":"ResponseComplete","verb":"get","requestURI":"/` + strings.Repeat("a", maxLine) + "\"}\n")
		}
	}
	b.WriteString(listPods) // no newline at the end
	return b.Bytes()
}

type malformedAt struct {
	line int64
	err  string
}

// sequential is the reference: Reader, one event at a time, added to a
// Delta in order.
func sequential(t *testing.T, m *match.Matcher, data []byte) (*coverage.Delta, Stats, []malformedAt) {
	t.Helper()
	var (
		d   coverage.Delta
		bad []malformedAt
	)
	r := NewReader(bytes.NewReader(data))
	r.OnMalformed = func(line int64, err error) { bad = append(bad, malformedAt{line, err.Error()}) }
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return &d, r.Stats(), bad
		}
		if err != nil {
			t.Fatal(err)
		}
		d.Add(Hit(m, ev))
	}
}

// TestParallelEqualsSequential: whatever the workers and chunks, Analyze
// makes the Delta that adding each counted event in order makes, bounded
// maps included, with the same stats and the same warnings.
func TestParallelEqualsSequential(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	m := match.New(cat)
	data := mixedLog(t)
	want, wantStats, wantBad := sequential(t, m, data)
	if want.Overflow == 0 || wantStats.Malformed != 13+2*12 || wantStats.Duplicates != 12+2*11+2*11 || wantStats.Open == 0 || wantStats.Incomplete != 0 {
		t.Fatalf("the log misses a case: overflow %d, stats %+v", want.Overflow, wantStats)
	}
	defer func(size int) { chunkSize = size }(chunkSize)
	for _, tc := range []struct{ workers, chunk int }{{1, 1 << 20}, {2, 1 << 20}, {4, 3000}, {3, 700}} {
		chunkSize = tc.chunk
		var (
			d   coverage.Delta
			bad []malformedAt
		)
		stats, err := AnalyzeSources(context.Background(), []Source{memSource("log", data)}, m, &d, Options{
			Workers:     tc.workers,
			OnMalformed: func(_ string, line int64, err error) { bad = append(bad, malformedAt{line, err.Error()}) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&d, want) {
			t.Errorf("workers %d, chunks of %d: the delta differs from the sequential one", tc.workers, tc.chunk)
		}
		if stats != wantStats || !reflect.DeepEqual(bad, wantBad) {
			t.Errorf("workers %d, chunks of %d: stats %+v, warnings %v; sequential %+v, %v", tc.workers, tc.chunk, stats, bad, wantStats, wantBad)
		}
	}
}

// TestSourcesReadAsOneLog: logs given together count as their
// concatenation, warnings name their own log and line.
func TestSourcesReadAsOneLog(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	m := match.New(cat)
	var gen bytes.Buffer
	if err := auditgen.Write(&gen, 3000); err != nil {
		t.Fatal(err)
	}
	all := append(gen.Bytes(), "oops\n"+listPods+"\n"+watchComplete+"\n"...)
	want, _, _ := sequential(t, m, all)
	var (
		sources []Source
		warned  []string
	)
	pieces := bytes.SplitAfter(all, []byte("\n"))
	sources = append(sources, memSource("part0", bytes.Join(pieces[:2991], nil)))
	for i, piece := range pieces[2991:] {
		if len(piece) > 0 {
			sources = append(sources, memSource(fmt.Sprint("part", i+1), piece))
		}
	}
	var d coverage.Delta
	_, err = AnalyzeSources(context.Background(), sources, m, &d, Options{
		Workers:     2,
		OnMalformed: func(name string, line int64, _ error) { warned = append(warned, fmt.Sprint(name, ":", line)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&d, want) || len(warned) != 1 || warned[0] != "part10:1" {
		t.Errorf("delta equal: %v; warnings %v", reflect.DeepEqual(&d, want), warned)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, strings.Repeat(listPods+"\n", 1+len(p)/len(listPods))[:min(len(p), r.n)])
	r.n -= n
	return n, nil
}

func TestReadErrors(t *testing.T) {
	count := func(*Event) {}
	payload := func() func(*Event) *Event { return func(*Event) *Event { return nil } }
	open := Source{Name: "missing", Open: func() (io.ReadCloser, error) { return nil, errors.New("no such file") }}
	if _, err := Read(context.Background(), []Source{memSource("ok", []byte(listPods)), open}, Options{}, payload, count); err == nil || !strings.Contains(err.Error(), "missing: no such file") {
		t.Errorf("open error: %v", err)
	}
	broken := Source{Name: "broken", Open: func() (io.ReadCloser, error) { return io.NopCloser(&failingReader{n: 5 << 20}), nil }}
	if _, err := Read(context.Background(), []Source{broken}, Options{}, payload, count); err == nil || !strings.Contains(err.Error(), "broken: read audit log: disk on fire") {
		t.Errorf("read error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Read(ctx, []Source{memSource("ok", []byte(listPods))}, Options{}, payload, count); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestProgress(t *testing.T) {
	var calls []Progress
	_, err := Read(context.Background(), []Source{memSource("log", []byte(listPods+"\n"+panicked))}, Options{
		Progress: func(p Progress) { calls = append(calls, p) },
	}, func() func(*Event) int { return func(*Event) int { return 0 } }, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	last := calls[len(calls)-1]
	if !last.Done || last.Stats.Requests != 2 || last.Stats.Lines != 2 || last.Source != "log" || last.Bytes != int64(len(listPods)+1+len(panicked)) {
		t.Errorf("last progress %+v", last)
	}
}

// FuzzChunk holds the parallel read to the sequential Reader on any input:
// the same lines, warnings, and requests.
func FuzzChunk(f *testing.F) {
	f.Add([]byte(listPods + "\n" + watchStarted + "\r\n \n" + watchComplete))
	f.Add([]byte("{\n}\n" + received + "\n\n" + panicked + " \u0085\n"))
	f.Add([]byte(`{"auditID":"a","stage":"Panic","requestURI":"/x"}` + "\n" + `{"auditID":"a",` + "\n" + `"stage":"Panic","requestURI":"/x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		type result struct {
			Stats Stats
			Bad   []int64
			IDs   []string
		}
		var want, got result
		r := NewReader(bytes.NewReader(data))
		r.OnMalformed = func(line int64, _ error) { want.Bad = append(want.Bad, line) }
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			want.IDs = append(want.IDs, ev.AuditID+" "+ev.Stage)
		}
		want.Stats = r.Stats()
		defer func(size int) { chunkSize = size }(chunkSize)
		chunkSize = 64
		stats, err := Read(context.Background(), []Source{memSource("fuzz", data)}, Options{
			Workers:     2,
			OnMalformed: func(_ string, line int64, _ error) { got.Bad = append(got.Bad, line) },
		}, func() func(*Event) string { return func(ev *Event) string { return ev.AuditID + " " + ev.Stage } },
			func(id string) { got.IDs = append(got.IDs, id) })
		if err != nil {
			t.Fatal(err)
		}
		got.Stats = stats
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parallel %+v\nsequential %+v", got, want)
		}
	})
}
