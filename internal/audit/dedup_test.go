package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

type ev struct{ id, stage string }

// dedupe feeds events to a Deduper whose payload names the stage counted.
func dedupe(window, maxOpen int, events ...ev) ([]string, DedupStats) {
	var counted []string
	d := NewDeduper(window, maxOpen, func(v string) { counted = append(counted, v) })
	for _, e := range events {
		d.Add(e.id, e.stage, e.id+"@"+e.stage)
	}
	d.Flush()
	return counted, d.Stats()
}

func TestDeduperCountsOnceInAnyOrder(t *testing.T) {
	const (
		rr = StageRequestReceived
		rs = StageResponseStarted
		rc = StageResponseComplete
		p  = StagePanic
	)
	for _, tc := range []struct {
		name   string
		events []ev
		want   []string
		stats  DedupStats
	}{
		{"stages in order", []ev{{"a", rr}, {"a", rs}, {"a", rc}}, []string{"a@" + rc}, DedupStats{Requests: 1}},
		{"started after complete", []ev{{"a", rc}, {"a", rs}, {"a", rr}}, []string{"a@" + rc}, DedupStats{Requests: 1, Duplicates: 2}},
		{"the same event twice", []ev{{"a", rc}, {"a", rc}, {"b", rs}, {"b", rs}, {"b", rc}}, []string{"a@" + rc, "b@" + rc}, DedupStats{Requests: 2, Duplicates: 2}},
		{"panic", []ev{{"a", rr}, {"a", p}, {"a", p}}, []string{"a@" + p}, DedupStats{Requests: 1, Duplicates: 1}},
		{"panic after started", []ev{{"a", rs}, {"a", p}, {"a", rc}}, []string{"a@" + p}, DedupStats{Requests: 1, Duplicates: 1}},
		{"open at the end", []ev{{"w", rr}, {"w", rs}, {"x", rr}, {"y", rs}}, []string{"w@" + rs, "y@" + rs}, DedupStats{Requests: 2, Open: 2, Incomplete: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, stats := dedupe(0, 0, tc.events...)
			if !slices.Equal(got, tc.want) || stats != tc.stats {
				t.Errorf("counted %v %+v, want %v %+v", got, stats, tc.want, tc.stats)
			}
		})
	}
}

func TestDeduperMemoryIsBounded(t *testing.T) {
	var events []ev
	for i := range 10 {
		events = append(events, ev{fmt.Sprint(i), StageResponseComplete})
	}
	// A window of 4 remembers the last 2 to 4 counted requests.
	got, _ := dedupe(4, 0, append(events, ev{"9", StageResponseComplete}, ev{"8", StageResponseStarted}, ev{"0", StageResponseComplete})...)
	if len(got) != 11 || got[10] != "0@"+StageResponseComplete {
		t.Errorf("window 4 counted %v; want 0 counted again, 8 and 9 not", got)
	}
	// Two open requests at most: the oldest settles early, counted at
	// ResponseStarted, and its ResponseComplete is then a duplicate; one
	// only received is dropped, and counts when its final stage comes.
	got, stats := dedupe(0, 2, ev{"a", StageResponseStarted}, ev{"b", StageRequestReceived}, ev{"c", StageResponseStarted},
		ev{"d", StageResponseStarted}, ev{"a", StageResponseComplete}, ev{"b", StageResponseComplete}, ev{"c", StageResponseComplete}, ev{"d", StageResponseComplete})
	want := []string{"a@" + StageResponseStarted, "b@" + StageResponseComplete, "c@" + StageResponseComplete, "d@" + StageResponseComplete}
	if !slices.Equal(got, want) || stats.Open != 1 || stats.Incomplete != 1 || stats.Duplicates != 1 {
		t.Errorf("max open 2 counted %v %+v, want %v", got, stats, want)
	}
	// The open table stays small while requests come and go.
	d := NewDeduper(0, 0, func(int) {})
	for i := range 100_000 {
		id := fmt.Sprint(i)
		d.Add(id, StageRequestReceived, 0)
		d.Add(id, StageResponseComplete, i)
	}
	if d.open.n != 0 || d.open.used != 0 || len(d.open.blocks) > 1 || len(d.open.slots) > 1024 {
		t.Errorf("open %d, entries %d in %d blocks, slots %d", d.open.n, d.open.used, len(d.open.blocks), len(d.open.slots))
	}
}

func TestKeyOf(t *testing.T) {
	id := "94b7c2be-a792-4e65-a3e5-fd1a151a45e5"
	k := keyOf(id)
	if fmt.Sprintf("%x", k[:]) != strings.ReplaceAll(id, "-", "") {
		t.Errorf("UUID key %x", k)
	}
	for _, other := range []string{strings.ToUpper(id), id[:35] + "g", "x" + id[1:], "a1", ""} {
		if keyOf(other) == k || keyOf(other) != keyOf(other) {
			t.Errorf("key of %q", other)
		}
	}
}

// realLog is the envtest API server's audit log, every stage logged.
func realLog(t *testing.T) []byte {
	t.Helper()
	data, ok := testLogs(t)["testdata/envtest-audit.log.gz"]
	if !ok {
		t.Fatal("no testdata/envtest-audit.log.gz")
	}
	return data
}

// scramble repeats and reorders the stages of a log's requests: some
// events twice (a retried batch), each moved up to 40 lines away, a
// ResponseStarted or a RequestReceived after its request's
// ResponseComplete, and then cut into two files that overlap (rotated logs
// shipped twice).
func scramble(t *testing.T, clean []byte, rng *rand.Rand) (first, second []byte) {
	type placed struct {
		line []byte
		at   float64
	}
	var out []placed
	complete := map[string]float64{}
	for i, line := range lines(clean) {
		ev, err := reference(line)
		if err != nil {
			t.Fatal(err)
		}
		at := float64(i) + float64(rng.IntN(81)-40)
		if ev.Stage == StageResponseComplete {
			complete[ev.AuditID] = at
		}
		out = append(out, placed{line, at})
		if rng.IntN(3) == 0 {
			out = append(out, placed{line, float64(i) + float64(rng.IntN(81)-40)})
		}
	}
	// Half the earlier stages go right after their ResponseComplete.
	for i := range out {
		ev, _ := reference(out[i].line)
		if ev.Stage != StageResponseComplete && rng.IntN(2) == 0 {
			out[i].at = complete[ev.AuditID] + 0.5
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	var a, b bytes.Buffer
	for i, p := range out {
		if i < len(out)*2/3 {
			a.Write(p.line)
			a.WriteByte('\n')
		}
		if i >= len(out)/2 {
			b.Write(p.line)
			b.WriteByte('\n')
		}
	}
	return a.Bytes(), b.Bytes()
}

func memSource(name string, data []byte) Source {
	return Source{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// perRequest reads logs and returns each counted request's event by
// audit ID, failing on a request counted twice.
func perRequest(t *testing.T, opts Options, logs ...[]byte) (map[string]*Event, Stats) {
	t.Helper()
	var sources []Source
	for i, data := range logs {
		sources = append(sources, memSource(fmt.Sprint("log", i), data))
	}
	got := map[string]*Event{}
	stats, err := Read(context.Background(), sources, opts,
		func() func(*Event) *Event { return (*Event).clone },
		func(ev *Event) {
			if _, twice := got[ev.AuditID]; twice {
				t.Errorf("request %s counted twice", ev.AuditID)
			}
			got[ev.AuditID] = ev
		})
	if err != nil {
		t.Fatal(err)
	}
	return got, stats
}

// TestRepeatedAndReorderedStagesCountLikeTheCleanLog: the coverage of a real
// log whose requests' stages are repeated, reordered and split across
// overlapping files is the clean log's, request for request.
func TestRepeatedAndReorderedStagesCountLikeTheCleanLog(t *testing.T) {
	clean := realLog(t)
	first, second := scramble(t, clean, rand.New(rand.NewPCG(1, 37)))

	// The scrambled logs do hold what the test is about.
	seen := map[string]string{}
	var startedLate, receivedLate, repeated int
	for _, line := range lines(append(slices.Clip(first), second...)) {
		ev, _ := reference(line)
		last := seen[ev.AuditID]
		switch {
		case ev.Stage == StageResponseStarted && strings.Contains(last, StageResponseComplete):
			startedLate++
		case ev.Stage == StageRequestReceived && strings.Contains(last, StageResponseComplete):
			receivedLate++
		case strings.Contains(last, ev.Stage):
			repeated++
		}
		seen[ev.AuditID] += ev.Stage + " "
	}
	if startedLate == 0 || receivedLate == 0 || repeated < 100 {
		t.Fatalf("scrambled log has %d late ResponseStarted, %d late RequestReceived, %d repeats", startedLate, receivedLate, repeated)
	}
	t.Logf("scrambled: %d late ResponseStarted, %d late RequestReceived, %d repeated stages", startedLate, receivedLate, repeated)

	defer func(size int) { chunkSize = size }(chunkSize)
	chunkSize = 4 << 10 // many chunks, decoded out of order
	want, wantStats := perRequest(t, Options{}, clean)
	got, gotStats := perRequest(t, Options{Workers: 3}, first, second)
	if len(want) != 584 || wantStats.Requests != 584 || wantStats.Incomplete != 0 || wantStats.Open != 0 || wantStats.Malformed != 0 {
		t.Fatalf("clean log: %d requests, stats %+v", len(want), wantStats)
	}
	if gotStats.Requests != wantStats.Requests || gotStats.Incomplete != 0 || gotStats.Open != 0 {
		t.Errorf("scrambled stats %+v, clean %+v", gotStats, wantStats)
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || !sameEvent(g, w) {
			t.Errorf("request %s: scrambled counted %+v, clean %+v", id, g, w)
		}
	}

	// And so is the coverage.
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	m := match.New(cat)
	var wantDelta, gotDelta coverage.Delta
	if _, err := AnalyzeSources(context.Background(), []Source{memSource("clean", clean)}, m, &wantDelta, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := AnalyzeSources(context.Background(), []Source{memSource("first", first), memSource("second", second)}, m, &gotDelta, Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	if wantDelta.Requests != 584 || !reflect.DeepEqual(gotDelta, wantDelta) {
		t.Errorf("scrambled coverage differs: %d requests, clean %d", gotDelta.Requests, wantDelta.Requests)
	}
}

// TestEmptyVerbIsAnUnknownRequest: the API server logs a request with a
// method it does not know with an empty verb; it is a request, unknown to
// the release, not a malformed line.
func TestEmptyVerbIsAnUnknownRequest(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	var d coverage.Delta
	stats, err := AnalyzeSources(context.Background(), []Source{memSource("real", realLog(t))}, match.New(cat), &d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	shape := UnknownMethod + " /api/v1/namespaces/{namespace}/pods/{name}"
	if stats.Malformed != 0 || d.Unknown[shape] == nil || d.Unknown[shape].Requests != 2 || d.Unknown[shape].ByStatus["4xx"] != 2 {
		t.Errorf("malformed %d, unknown %v", stats.Malformed, d.Unknown)
	}

	line := `{"kind":"Event","auditID":"e","stage":"ResponseComplete","verb":"","requestURI":"/version","responseStatus":{"code":405}}`
	events, stats2 := readAll(t, line)
	if len(events) != 1 || stats2.Malformed != 0 || events[0].Method() != "" {
		t.Fatalf("events %+v, stats %+v", events, stats2)
	}
	if h := Hit(match.New(cat), &events[0]); h.OperationID != "" || h.Unknown != UnknownMethod+" /version" {
		t.Errorf("hit %+v", h)
	}
}

// BenchmarkDeduper is the sequencer's work per event: one new request,
// counted at its ResponseComplete, in a full window.
func BenchmarkDeduper(b *testing.B) {
	keys := make([]idKey, 2_000_000)
	for i := range keys {
		keys[i] = keyOf(fmt.Sprintf("%08x-7d4c-4e5f-9a1b-%012x", i, i))
	}
	n := 0
	d := NewDeduper(0, 0, func(int) { n++ })
	b.ResetTimer()
	const batch = 1000
	for i := 0; i < b.N; i += batch {
		chunk := keys[i%len(keys):][:min(batch, b.N-i)]
		d.warm(func(yield func(*idKey) bool) {
			for k := range chunk {
				if !yield(&chunk[k]) {
					return
				}
			}
		})
		for _, k := range chunk {
			d.add(k, stageComplete, 0)
		}
	}
}

// TestTablesAgreeWithMaps: the window's and the open requests' tables
// against Go maps, on many inserts and deletions with colliding keys.
func TestTablesAgreeWithMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var (
		open     openTable[int]
		set      idSet
		wantOpen = map[idKey]int{}
		wantSet  = map[idKey]bool{}
	)
	key := func() idKey {
		var k idKey
		k[rng.IntN(2)] = byte(rng.IntN(40)) // few distinct keys, the all-zero one among them
		return k
	}
	for i := range 200_000 {
		k := key()
		slot, ok := open.find(&k)
		if want, wantOK := wantOpen[k]; ok != wantOK || ok && open.entry(slot).v != want {
			t.Fatalf("step %d: open find %v %v, want %v %v", i, ok, slot, want, wantOK)
		}
		if ok && rng.IntN(2) == 0 {
			open.delete(slot)
			delete(wantOpen, k)
		} else if !ok {
			open.insert(&k, openEntry[int]{v: i})
			wantOpen[k] = i
		}
		if open.n != len(wantOpen) {
			t.Fatalf("step %d: %d open, want %d", i, open.n, len(wantOpen))
		}
		if set.has(&k) != wantSet[k] {
			t.Fatalf("step %d: set has %v", i, !wantSet[k])
		}
		if !wantSet[k] {
			set.add(&k, 1<<20)
			wantSet[k] = true
		}
	}
	var many idSet
	for i := range 300_000 {
		k := keyOf(fmt.Sprint(i))
		many.add(&k, 1<<20)
	}
	for i := range 300_000 {
		if k := keyOf(fmt.Sprint(i)); !many.has(&k) {
			t.Fatalf("key %d lost", i)
		}
	}
	// Cleared, as the window's older generation is: it forgets, keeps its
	// room and takes keys again.
	slots := len(many.slots)
	many.clear()
	for i := range 300_000 {
		k := keyOf(fmt.Sprint(i))
		if many.has(&k) {
			t.Fatalf("key %d kept", i)
		}
		if i%2 == 0 {
			many.add(&k, 1<<20)
		}
	}
	for i := range 300_000 {
		if k := keyOf(fmt.Sprint(i)); many.has(&k) != (i%2 == 0) {
			t.Fatalf("key %d: has %v after clearing", i, !(i%2 == 0))
		}
	}
	if len(many.slots) != slots || many.n != 150_000 {
		t.Errorf("%d slots, %d keys; want %d, 150000", len(many.slots), many.n, slots)
	}
}
