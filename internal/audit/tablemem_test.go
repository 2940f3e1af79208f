package audit

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestDeduperMappedTables: a window large enough for its tables to be
// mapped (where the system maps them) counts exactly as ever, keeps only
// the mappings in use as its tables grow, and releases them once the
// Deduper is unreachable.
func TestDeduperMappedTables(t *testing.T) {
	const n = 300_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%08x-7d4c-4e5f-9a1b-%012x", i, i)
	}
	counted := 0
	d := NewDeduper(1<<20, 1<<19, func(int) { counted++ })
	for _, k := range keys {
		d.Add(k, StageResponseStarted, 0) // the open table grows too
	}
	for _, k := range keys {
		d.Add(k, StageResponseComplete, 0)
	}
	for _, k := range keys {
		d.Add(k, StageResponseComplete, 0)
	}
	if s := d.Stats(); counted != n || s.Requests != n || s.Duplicates != n {
		t.Fatalf("counted %d, stats %+v; want %d requests, %d duplicates", counted, s, n, n)
	}
	m := d.mem
	if !canMapTables {
		if m != nil {
			t.Fatal("tables mapped where mapping is not supported")
		}
		return
	}
	// In use: the window's newer generation's slots and keys, and the
	// open table's slots; grown-out-of ones are released.
	want := 0
	for _, table := range []int{len(d.done[0].slots) * 8, cap(d.done[0].keys) * 16, len(d.done[1].slots) * 8, cap(d.done[1].keys) * 16, len(d.open.slots) * 8} {
		if table >= hugeTable {
			want++
		}
	}
	if live := m.liveMappings(); want == 0 || live != want {
		t.Fatalf("%d mappings live, want %d (and some)", live, want)
	}
	m.mu.Lock()
	for p := range m.live {
		if uintptr(p)%hugeTable != 0 {
			t.Errorf("a mapping at %p is not on a huge-page boundary", p)
		}
	}
	m.mu.Unlock()
	d = nil
	for deadline := time.Now().Add(5 * time.Second); m.liveMappings() > 0 && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if live := m.liveMappings(); live != 0 {
		t.Errorf("%d mappings live after the Deduper is gone", live)
	}
}
