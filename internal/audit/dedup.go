package audit

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"slices"
	"unsafe"
)

// Stage order of a request: the API server logs RequestReceived, then
// ResponseStarted for long-running requests (watch, exec, proxy, log
// follow...), then ResponseComplete, or Panic instead when the handler
// panicked.
type stage uint8

const (
	stageNone stage = iota
	stageReceived
	stageStarted
	stageComplete
	stagePanic
)

func stageOf(s string) stage {
	switch s {
	case StageRequestReceived:
		return stageReceived
	case StageResponseStarted:
		return stageStarted
	case StageResponseComplete:
		return stageComplete
	case StagePanic:
		return stagePanic
	}
	return stageNone
}

// DefaultWindow is how many recently counted audit IDs a Deduper
// remembers by default: between DefaultWindow/2 (262,144) and
// DefaultWindow (524,288) requests, the most recently counted ones, in
// 16 MB at most. Long-running requests do not need it: they stay open
// (see DefaultMaxOpen) until their final stage, however late.
const DefaultWindow = 1 << 19

// DefaultMaxOpen is how many open requests (seen at RequestReceived or
// ResponseStarted, not yet at their final stage) a Deduper holds by
// default: far more long-running requests than an API server keeps open
// at once. They take about 20 MB at most.
const DefaultMaxOpen = 1 << 18

// DedupStats says what a Deduper made of the events it was given.
type DedupStats struct {
	// Requests are the requests counted, one per audit ID.
	Requests int64 `json:"requests"`
	// Open are the requests among them counted at their ResponseStarted
	// stage: still open when the input ended (a watch), or the oldest
	// open requests when more than the open bound were.
	Open int64 `json:"open,omitempty"`
	// Duplicates are events that told nothing new: a stage seen before,
	// or any stage of a request already counted.
	Duplicates int64 `json:"duplicates"`
	// Incomplete are requests seen only at RequestReceived when the input
	// ended, or when the open bound dropped them: not counted, since the
	// API server may not have answered them (one dropped by the bound
	// still counts if its final stage comes later).
	Incomplete int64 `json:"incomplete"`
}

// A Deduper counts each request of a stream of audit events exactly once,
// whatever the order its stages arrive in and however often each arrives
// (overlapping rotated files, an audit webhook's retried batch). A request
// counts at its final stage, ResponseComplete or Panic, with that event's
// payload; a request whose final stage never arrives counts at its
// ResponseStarted when the input ends (Flush), like a watch still open.
// RequestReceived never counts on its own.
//
// Memory is bounded on endless input. Counted audit IDs are remembered in
// a window of the window/2 to window most recently counted requests; a
// duplicate or an earlier stage of a request arriving later than that
// counts it again. Open requests are held until their final stage, at
// most maxOpen of them; beyond that the oldest eighth settle early
// (counted at their ResponseStarted, or dropped as incomplete when they
// only had RequestReceived).
//
// Audit IDs that are UUIDs in the API server's form (lower-case hex,
// 8-4-4-4-12) are remembered exactly, in 16 bytes; other IDs by a 128-bit
// hash.
//
// A Deduper is not safe for concurrent use.
type Deduper[T any] struct {
	count func(T)
	// done holds the counted IDs: done[0] fills up to half the window,
	// then the generations rotate and the older one is forgotten.
	done [2]idSet
	half int
	// open holds the requests seen at a stage before their final one; seq
	// numbers them in the order they opened.
	open    openTable[T]
	seq     uint64
	maxOpen int
	stats   DedupStats
	warmed  uint64
	// mem holds the large tables of done and open.
	mem *tableMem
}

type openEntry[T any] struct {
	key   idKey
	seq   uint64 // 0 for a free entry
	stage stage  // stageReceived or stageStarted
	v     T
}

// NewDeduper returns a Deduper that calls count once per request, with
// the payload of the event it counts at. window and maxOpen bound its
// memory (0: DefaultWindow, DefaultMaxOpen).
func NewDeduper[T any](window, maxOpen int, count func(T)) *Deduper[T] {
	if window <= 0 {
		window = DefaultWindow
	}
	if maxOpen <= 0 {
		maxOpen = DefaultMaxOpen
	}
	d := &Deduper[T]{
		count:   count,
		half:    max(window/2, 1),
		maxOpen: maxOpen,
	}
	d.mem = newTableMem(d)
	d.done[0].mem, d.done[1].mem, d.open.mem = d.mem, d.mem, d.mem
	return d
}

// Add takes one event: the request's audit ID, the event's stage
// (RequestReceived, ResponseStarted, ResponseComplete or Panic; others are
// ignored) and the payload to count the request with.
func (d *Deduper[T]) Add(auditID, stageName string, v T) {
	if st := stageOf(stageName); st != stageNone {
		d.add(keyOf(auditID), st, v)
	}
}

func (d *Deduper[T]) add(key idKey, st stage, v T) {
	if d.counted(key) {
		d.stats.Duplicates++
		return
	}
	slot, isOpen := d.open.find(&key)
	switch st {
	case stageReceived:
		if isOpen {
			d.stats.Duplicates++
			return
		}
		d.push(key, st, v)
	case stageStarted:
		if isOpen {
			e := d.open.entry(slot)
			if e.stage == stageStarted {
				d.stats.Duplicates++
				return
			}
			e.stage, e.v = stageStarted, v
			return
		}
		d.push(key, st, v)
	default: // the final stage
		if isOpen {
			d.open.delete(slot)
		}
		d.remember(key)
		d.stats.Requests++
		d.count(v)
	}
}

// counted says whether key was counted within the window. An ID found in
// the older generation is copied to the newer one: it is still in use.
func (d *Deduper[T]) counted(key idKey) bool {
	if d.done[0].has(&key) {
		return true
	}
	if d.done[1].has(&key) {
		d.remember(key)
		return true
	}
	return false
}

func (d *Deduper[T]) remember(key idKey) {
	if d.done[0].n >= d.half {
		d.done[0], d.done[1] = d.done[1], d.done[0]
		d.done[0].clear()
	}
	d.done[0].add(&key, d.half)
}

// warm loads the window's slots of keys into the cache, all at once, so
// that their misses overlap rather than come one after the other.
func (d *Deduper[T]) warm(keys func(yield func(*idKey) bool)) {
	var sum uint64
	for k := range keys {
		// The older generation is mostly ruled out by its filter: no
		// need for its slots.
		sum += d.done[0].touch(k) + d.done[1].touchFilter(k) + d.open.touch(k)
	}
	d.warmed = sum // so that the loads are made
}

// push opens a request. When maxOpen are open, the oldest eighth of them
// settle first.
func (d *Deduper[T]) push(key idKey, st stage, v T) {
	if d.open.n >= d.maxOpen {
		d.settleOldest(max(d.maxOpen/8, 1))
	}
	d.seq++
	d.open.insert(&key, openEntry[T]{key: key, seq: d.seq, stage: st, v: v})
}

// settleOldest ends the n oldest open requests: counted at their
// ResponseStarted, or incomplete. It orders the open entries by their
// indices, not copies of them (entries are mostly in order already), and
// when all settle, empties the table at once.
func (d *Deduper[T]) settleOldest(n int) {
	t := &d.open
	oldest := make([]int32, 0, t.n)
	t.each(func(i int32) { oldest = append(oldest, i) })
	bySeq := func(a, b int32) int { return cmp.Compare(t.at(a).seq, t.at(b).seq) }
	if !slices.IsSortedFunc(oldest, bySeq) {
		slices.SortFunc(oldest, bySeq)
	}
	all := n >= len(oldest)
	for _, i := range oldest[:min(n, len(oldest))] {
		e := *t.at(i)
		if !all {
			slot, _ := t.find(&e.key)
			t.delete(slot)
		}
		if e.stage == stageReceived {
			d.stats.Incomplete++
			continue
		}
		d.remember(e.key)
		d.stats.Requests++
		d.stats.Open++
		d.count(e.v)
	}
	if all {
		t.reset()
	}
}

// Flush ends the input: requests still open count at their
// ResponseStarted, oldest first; those seen only at RequestReceived are
// incomplete. The Deduper can take more events afterwards.
func (d *Deduper[T]) Flush() { d.settleOldest(d.open.n) }

// Stats returns what the Deduper did so far.
func (d *Deduper[T]) Stats() DedupStats { return d.stats }

// idKey identifies an audit ID in 16 bytes.
type idKey [16]byte

// idSet is a set of keys: the keys in the order added, and a table of
// slots (open addressing, linear probing, at most half full) of 8 bytes,
// 32 bits of a key's hash and the key's index. The window's sets are far
// larger than the caches, and every event is looked up in both: a lookup
// mostly reads one slot, in a table half the size of the keys, and a key
// only when the hash bits agree; an addition writes the keys in order,
// not at random. (Slots of whole keys took a quarter more time per event.)
//
// A filter (a blocked Bloom filter: three bits of one word a key, eight
// bits a key) rules out most keys the set does not hold without reading
// their slot: the older generation, looked up for every event, holds
// few of them.
type idSet struct {
	slots  []idSlot
	keys   []idKey
	filter []uint64 // len(slots)/16 words, 1 at least
	shift  uint     // 64 - log2(len(slots))
	n      int
	mem    *tableMem
}

// filterAt is the filter's word for a key of hash h, from bits 18 up
// (below the slot's, the upper bits, at the window's sizes), and the three
// bits of it the key sets, from bits 0 to 17.
func (s *idSet) filterAt(h uint64) (int, uint64) {
	return int(h>>18) & (len(s.filter) - 1), 1<<(h&63) | 1<<(h>>6&63) | 1<<(h>>12&63)
}

type idSlot struct {
	fp  uint32 // hash bits other than the slot's
	idx uint32 // index in keys + 1; 0 is an empty slot
}

// fingerprint is the 32 bits of h a slot keeps. Keys probed together
// share the upper bits (their home), so it holds the lower ones too.
func fingerprint(h uint64) uint32 { return uint32(h) ^ uint32(h>>32) }

// home is k's slot in a table of 1<<(64-shift) slots.
func home(k *idKey, shift uint) int { return int(hashOf(k) >> shift) }

func (s *idSet) index(k *idKey) int { return home(k, s.shift) }

func (s *idSet) has(k *idKey) bool {
	if s.n == 0 {
		return false
	}
	h := hashOf(k)
	if w, bits := s.filterAt(h); s.filter[w]&bits != bits {
		return false
	}
	fp := fingerprint(h)
	mask := len(s.slots) - 1
	for i := int(h >> s.shift); ; i = (i + 1) & mask {
		sl := s.slots[i]
		if sl.idx == 0 {
			return false
		}
		if sl.fp == fp && s.keys[sl.idx-1] == *k {
			return true
		}
	}
}

// add adds a key the set does not hold; the set grows up to room for
// limit keys.
func (s *idSet) add(k *idKey, limit int) {
	if 2*(s.n+1) > len(s.slots) {
		s.grow(limit)
	}
	s.keys = append(s.keys, *k)
	s.n++
	s.place(hashOf(k), uint32(s.n))
}

// place puts the key of index idx-1, of hash h, in its slot and the
// filter.
func (s *idSet) place(h uint64, idx uint32) {
	w, bits := s.filterAt(h)
	s.filter[w] |= bits
	mask := len(s.slots) - 1
	i := int(h >> s.shift)
	for s.slots[i].idx != 0 {
		i = (i + 1) & mask
	}
	s.slots[i] = idSlot{fingerprint(h), idx}
}

func (s *idSet) grow(limit int) {
	// Past 64k keys, straight to the room for limit: each rehash is a
	// cache miss per key.
	full := 1 << bits.Len(uint(2*limit-1))
	size := max(1024, 2*len(s.slots))
	if size >= 1<<17 {
		size = full
	}
	size = min(size, full)
	oldSlots, oldKeys := s.slots, s.keys
	s.slots = makeTable[idSlot](s.mem, size)
	s.filter = make([]uint64, max(size/16, 1))
	s.shift = uint(64 - bits.TrailingZeros(uint(size)))
	keys := makeTable[idKey](s.mem, size/2)[:len(s.keys)]
	copy(keys, s.keys)
	s.keys = keys
	for j := range s.keys {
		s.place(hashOf(&s.keys[j]), uint32(j+1))
	}
	freeTable(s.mem, oldSlots)
	freeTable(s.mem, oldKeys)
}

func (s *idSet) clear() {
	clear(s.slots)
	clear(s.filter)
	s.keys = s.keys[:0]
	s.n = 0
}

// touch reads k's slot.
func (s *idSet) touch(k *idKey) uint64 {
	if s.n == 0 {
		return 0
	}
	return uint64(s.slots[s.index(k)].idx)
}

// touchFilter reads k's word of the filter.
func (s *idSet) touchFilter(k *idKey) uint64 {
	if s.n == 0 {
		return 0
	}
	w, _ := s.filterAt(hashOf(k))
	return s.filter[w]
}

var seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// keyOf is the 16 bytes of a UUID in the API server's form, and a 128-bit
// hash of anything else.
func keyOf(id string) idKey {
	if k, ok := parseUUID(id); ok {
		return k
	}
	var k idKey
	a, b := maphash.String(seeds[0], id), maphash.String(seeds[1], id)
	for i := range 8 {
		k[i], k[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
	}
	return k
}

// parseUUID reads a UUID written 8-4-4-4-12 in lower-case hex: eight
// digits at a time (the four groups between dashes are read as two pairs),
// in a third less time than a table look-up per digit.
func parseUUID(id string) (k idKey, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return k, false
	}
	p := unsafe.Pointer(unsafe.StringData(id))
	w0 := load64(p, 0)
	w1 := load64(p, 9)&0xffffffff | load64(p, 10)&^0xffffffff // 9-12, 14-17
	w2 := load64(p, 19)&0xffffffff | load64(p, 20)&^0xffffffff
	w3 := load64(p, 28)
	binary.LittleEndian.PutUint32(k[0:], unhex8(w0))
	binary.LittleEndian.PutUint32(k[4:], unhex8(w1))
	binary.LittleEndian.PutUint32(k[8:], unhex8(w2))
	binary.LittleEndian.PutUint32(k[12:], unhex8(w3))
	// An ID in upper case must not be mistaken for its lower-case twin.
	return k, hexDigits(w0)&hexDigits(w1)&hexDigits(w2)&hexDigits(w3) == msb
}

// hexDigits has the top bit set of each byte of w that is a lower-case
// hex digit. For bytes below 0x80, the top bit of x+(0x80-lo) says x >=
// lo, and that of x+(0x7f-hi) says x > hi; no byte carries into the next.
func hexDigits(w uint64) uint64 {
	x := w &^ msb
	digit := (x + lsb*(0x80-'0')) &^ (x + lsb*(0x7f-'9'))
	letter := (x + lsb*(0x80-'a')) &^ (x + lsb*(0x7f-'f'))
	return (digit | letter) &^ w & msb
}

// unhex8 reads eight lower-case hex digits, the first in the low byte of
// w, as four bytes, the first in the low byte.
func unhex8(w uint64) uint32 {
	// Digits are their low nibble, letters that plus 9 (0x61 > 0x39).
	d := w&(lsb*0x0f) + (w>>6&lsb)*9
	// Byte 2j: digit 2j in the high nibble, digit 2j+1 in the low one.
	d = (d<<4 | d>>8) & 0x00ff00ff00ff00ff
	d = (d | d>>8) & 0x0000ffff0000ffff
	return uint32(d | d>>16)
}

// openTable maps the keys of open requests to their entries: open
// addressing, linear probing, at most half full, deletion by shifting back.
// A slot holds the upper half of its key's hash and the index of its
// entry, so that a lookup mostly reads one slot of 8 bytes, and rarely an
// entry. Entries live in blocks, which the table never moves or copies
// as it grows.
type openTable[T any] struct {
	slots  []openSlot
	shift  uint
	n      int
	blocks []*[openBlock]openEntry[T]
	used   int32 // entries handed out, free ones among them
	free   []int32
	mem    *tableMem // for slots (entries may hold pointers)
}

// openBlock is how many entries a block holds.
const openBlock = 1 << 12

type openSlot struct {
	hash uint32 // the upper half of the key's hash
	idx  int32  // entry index + 1; 0 is an empty slot
}

// hashOf is k's hash; home is its upper bits.
func hashOf(k *idKey) uint64 {
	lo, hi := binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])
	return (lo*0x9e3779b97f4a7c15 ^ hi) * 0xbf58476d1ce4e5b9
}

// at is entry i.
func (t *openTable[T]) at(i int32) *openEntry[T] { return &t.blocks[i/openBlock][i%openBlock] }

// home is the slot a hash's upper half starts at (tables have fewer than
// 1<<32 slots).
func (t *openTable[T]) home(h uint32) int { return int(h >> (t.shift - 32)) }

func (t *openTable[T]) find(k *idKey) (int, bool) {
	if t.n == 0 {
		return 0, false
	}
	h := uint32(hashOf(k) >> 32)
	mask := len(t.slots) - 1
	for i := t.home(h); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s.idx == 0 {
			return 0, false
		}
		if s.hash == h && t.at(s.idx-1).key == *k {
			return i, true
		}
	}
}

func (t *openTable[T]) entry(slot int) *openEntry[T] { return t.at(t.slots[slot].idx - 1) }

// each calls f with the index of every entry in use.
func (t *openTable[T]) each(f func(i int32)) {
	for i := range t.used {
		if t.at(i).seq != 0 {
			f(i)
		}
	}
}

// insert adds a key the table does not hold.
func (t *openTable[T]) insert(k *idKey, e openEntry[T]) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = t.used
		t.used++
		if int(idx/openBlock) == len(t.blocks) {
			t.blocks = append(t.blocks, new([openBlock]openEntry[T]))
		}
	}
	e.key = *k
	*t.at(idx) = e
	t.place(openSlot{uint32(hashOf(k) >> 32), idx + 1})
	t.n++
}

func (t *openTable[T]) place(s openSlot) {
	mask := len(t.slots) - 1
	i := t.home(s.hash)
	for t.slots[i].idx != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

func (t *openTable[T]) grow() {
	size := max(1024, 2*len(t.slots))
	old := t.slots
	t.slots = makeTable[openSlot](t.mem, size)
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	for _, s := range old {
		if s.idx != 0 {
			t.place(s)
		}
	}
	freeTable(t.mem, old)
}

// delete empties slot, moving back the keys after it that would no
// longer be found.
func (t *openTable[T]) delete(slot int) {
	idx := t.slots[slot].idx - 1
	*t.at(idx) = openEntry[T]{}
	t.free = append(t.free, idx)
	t.n--
	mask := len(t.slots) - 1
	i := slot
	for j := (i + 1) & mask; t.slots[j].idx != 0; j = (j + 1) & mask {
		h := t.home(t.slots[j].hash)
		// The key at j stays if its home is cyclically in (i, j].
		if i <= j && i < h && h <= j || i > j && (i < h || h <= j) {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = openSlot{}
	if t.n == 0 {
		t.used, t.free = 0, t.free[:0]
	}
}

// reset empties the table, keeping its memory.
func (t *openTable[T]) reset() {
	clear(t.slots)
	for i := range t.used {
		*t.at(i) = openEntry[T]{}
	}
	t.n, t.used, t.free = 0, 0, t.free[:0]
}

// touch reads k's slot.
func (t *openTable[T]) touch(k *idKey) uint64 {
	if t.n == 0 {
		return 0
	}
	return uint64(t.slots[t.home(uint32(hashOf(k)>>32))].idx)
}
