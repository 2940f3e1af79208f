package audit

import (
	"bufio"
	"bytes"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// BenchmarkIntern is the per-event work of AnalyzeSources' workers after
// decoding: match the request and find its hit in the worker's table, on
// already decoded events of the generated log.
func BenchmarkIntern(b *testing.B) {
	var buf bytes.Buffer
	if err := auditgen.Write(&buf, 12_000); err != nil {
		b.Fatal(err)
	}
	var events []Event
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev Event
		if err := ParseLine(sc.Bytes(), &ev); err != nil {
			b.Fatal(err)
		}
		events = append(events, ev)
	}
	cat, err := catalog.Load("1.37")
	if err != nil {
		b.Fatal(err)
	}
	m := match.New(cat)
	t := newHitTable()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		t.intern(m, &events[n%len(events)])
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
