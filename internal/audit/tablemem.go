package audit

import (
	"runtime"
	"sync"
	"unsafe"
)

// tableMem holds the Deduper's large tables (slots and keys, pointer-free)
// outside the Go heap where the system offers huge pages (see
// mapTable): the window's tables are touched at random, once per event,
// and both the page faults that first touch them and the TLB misses of
// small pages cost more than the lookups. Smaller tables, and any table
// when mapping fails, are ordinary slices. A nil *tableMem makes only
// ordinary slices.
type tableMem struct {
	// mu guards live: freeAll runs on the runtime's cleanup goroutine.
	mu sync.Mutex
	// live are the mappings handed out and not freed, by their address.
	live map[unsafe.Pointer][]byte
}

// liveMappings is how many mappings are handed out and not freed.
func (m *tableMem) liveMappings() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

// hugeTable is the smallest table worth a mapping of its own: one huge page.
const hugeTable = 2 << 20

// newTableMem returns the tableMem of owner, whose mappings are released
// once owner is unreachable.
func newTableMem[O any](owner *O) *tableMem {
	if !canMapTables {
		return nil
	}
	m := &tableMem{live: map[unsafe.Pointer][]byte{}}
	runtime.AddCleanup(owner, (*tableMem).freeAll, m)
	return m
}

// makeTable returns n zeroed elements of E, which must hold no pointers.
func makeTable[E any](m *tableMem, n int) []E {
	var zero E
	if size := n * int(unsafe.Sizeof(zero)); m != nil && size >= hugeTable {
		if b := mapTable(size); b != nil {
			p := unsafe.Pointer(unsafe.SliceData(b))
			m.mu.Lock()
			m.live[p] = b
			m.mu.Unlock()
			return unsafe.Slice((*E)(p), n)
		}
	}
	return make([]E, n)
}

// freeTable releases a table makeTable returned, when it was mapped; its
// memory must no longer be used.
func freeTable[E any](m *tableMem, s []E) {
	if m == nil || cap(s) == 0 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	m.mu.Lock()
	b, ok := m.live[p]
	delete(m.live, p)
	m.mu.Unlock()
	if ok {
		unmapTable(b)
	}
}

func (m *tableMem) freeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, b := range m.live {
		delete(m.live, p)
		unmapTable(b)
	}
}
