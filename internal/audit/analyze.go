package audit

import (
	"context"
	"hash/maphash"
	"io"
	"math/bits"
	"strings"
	"sync"
	"unsafe"

	"apisnoop.dev/kube-apisnoop/internal/bodyfields"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// Match matches one audit event against the release.
func Match(m *match.Matcher, ev *Event) match.Result {
	return m.MatchRequestURI(ev.Method(), ev.RequestURI)
}

// UnknownMethod stands for the method of a request whose audit event has
// an empty verb (a resource request with a method the API server does not
// know) in the shape of unknown requests.
const UnknownMethod = "(unknown method)"

// Hit is the coverage hit of one audit event.
func Hit(m *match.Matcher, ev *Event) coverage.Hit {
	method := ev.Method()
	res := m.MatchRequestURI(method, ev.RequestURI)
	if method == "" {
		method = UnknownMethod
	}
	return coverage.NewHit(res, method, ev.Code(), Client(ev))
}

// ServiceAccountUserPrefix starts the user name of a service account's
// token: "system:serviceaccount:NAMESPACE:NAME".
const ServiceAccountUserPrefix = "system:serviceaccount:"

// Client is the client an audit event names: its user and user agent.
// Service account users ("system:serviceaccount:ns:name") also fill the
// namespace and service account.
func Client(ev *Event) coverage.Client { return clientOf(ev.User.Username, ev.UserAgent) }

func clientOf(user, userAgent string) coverage.Client {
	c := coverage.Client{User: user, UserAgent: userAgent}
	if rest, ok := strings.CutPrefix(c.User, ServiceAccountUserPrefix); ok {
		if ns, sa, ok := strings.Cut(rest, ":"); ok {
			c.Namespace, c.ServiceAccount = ns, sa
		}
	}
	return c
}

// Analyze reads one audit log and adds its requests to d. progress, when
// set, is called now and then with the stats so far.
func Analyze(r io.Reader, m *match.Matcher, d *coverage.Delta, progress func(Stats), onMalformed func(line int64, err error)) (Stats, error) {
	var opts Options
	if progress != nil {
		opts.Progress = func(p Progress) { progress(p.Stats) }
	}
	if onMalformed != nil {
		opts.OnMalformed = func(_ string, line int64, err error) { onMalformed(line, err) }
	}
	src := Source{Name: "audit log", Open: func() (io.ReadCloser, error) { return io.NopCloser(r), nil }}
	return AnalyzeSources(context.Background(), []Source{src}, m, d, opts)
}

// AnalyzeSources reads audit logs in parallel, as one log in the order
// given (so that requests repeated across overlapping files count once),
// and adds their requests to d. d ends up exactly as if every counted
// event had been added to it in input order. On an error d is unchanged.
//
// Events with a requestObject (logs at Request or RequestResponse level)
// add their body's field coverage (see BodyKind) to their operation, with
// the event the request counts at, so once per request. The catalog's
// schemas are loaded when the first such event arrives; without schemas,
// bodies add nothing.
func AnalyzeSources(ctx context.Context, sources []Source, m *match.Matcher, d *coverage.Delta, opts Options) (Stats, error) {
	var (
		mu     sync.Mutex
		tables []*hitTable
		bodies []*bodyTable
		counts [][]int64
		order  []hitRef // each hit in the order it was first counted
		// The same for bodies.
		bodyCounts [][]int64
		bodyOrder  []hitRef
		schemas    = bodyfields.LazySchemas(m.Catalog())
	)
	newWorker := func() func(*Event) hitRef {
		t := newHitTable()
		b := &bodyTable{schemas: schemas}
		mu.Lock()
		w := int32(len(tables))
		tables = append(tables, t)
		bodies = append(bodies, b)
		counts = append(counts, nil)
		bodyCounts = append(bodyCounts, nil)
		mu.Unlock()
		return func(ev *Event) hitRef {
			if opts.Select != nil && !opts.Select(ev.User.Username, ev.ObjectNamespace(), ev.UserAgent) {
				return hitRef{w, -1, -1}
			}
			hit, op := t.intern(m, ev)
			r := hitRef{w, hit, -1}
			if ev.RequestObject != nil {
				r.body = b.add(ev, op)
			}
			return r
		}
	}
	count := func(r hitRef) {
		if r.hit < 0 {
			return // not selected
		}
		counts[r.worker], order = countRef(counts[r.worker], r.hit, r, order)
		if r.body >= 0 {
			bodyCounts[r.worker], bodyOrder = countRef(bodyCounts[r.worker], r.body, r, bodyOrder)
		}
	}
	stats, err := Read(ctx, sources, opts, newWorker, count)
	if err != nil {
		return stats, err
	}
	for _, r := range order {
		d.AddN(tables[r.worker].hits[r.hit], counts[r.worker][r.hit])
	}
	for _, r := range bodyOrder {
		bodies[r.worker].bodies[r.body].AddTo(d, bodyCounts[r.worker][r.body])
	}
	return stats, nil
}

// countRef counts entry i of a worker's table in c, appending r to order
// when it is the first time.
func countRef(c []int64, i int32, r hitRef, order []hitRef) ([]int64, []hitRef) {
	if int(i) >= len(c) {
		c = append(c, make([]int64, int(i)+1-len(c))...)
	}
	if c[i] == 0 {
		order = append(order, r)
	}
	c[i]++
	return c, order
}

// ObjectNamespace is the namespace of the event's object, if it has one:
// what a session's spec.audit.namespaces and coverage's --object-namespace
// compare.
func (e *Event) ObjectNamespace() string {
	if e.ObjectRef == nil {
		return ""
	}
	return e.ObjectRef.Namespace
}

// hitRef names a hit in a worker's table, and the field result of its
// body in the worker's bodyTable; a negative hit is a request
// Options.Select left out, a negative body a request without one.
type hitRef struct{ worker, hit, body int32 }

// hitTable holds the distinct hits one worker met. Its keys are what a hit
// is made of, so that looking an event up allocates nothing (but the shape
// of an unknown request). It is an open-addressing table of its own rather
// than a map[hitKey]int32: every event looks a key up, and a map hashes
// each of the key's strings with a call of its own, the hash and compare
// of the key being a good part of an event's cost after decoding. Here the
// user and user agent, the long strings, are hashed once each, the rest is
// mixed in cheaply and settled by comparing keys.
type hitTable struct {
	seed  maphash.Seed
	slots []int32 // entry index + 1, 0 for free; a power of two long
	keys  []hitKey
	sums  []uint64 // each key's hash
	hits  []coverage.Hit
}

func newHitTable() *hitTable {
	return &hitTable{seed: maphash.MakeSeed(), slots: make([]int32, 256)}
}

type hitKey struct {
	op              *catalog.Operation
	unknown, verb   string
	status          int
	user, userAgent string
}

// hash is k's hash: verbs are a handful of short words, told apart by
// their length and first and last bytes (comparing keys settles the rest).
func (t *hitTable) hash(k *hitKey) uint64 {
	h := maphash.String(t.seed, k.user)
	h ^= bits.RotateLeft64(maphash.String(t.seed, k.userAgent), 21)
	v := uint64(len(k.verb))
	if len(k.verb) > 0 {
		v |= uint64(k.verb[0])<<8 | uint64(k.verb[len(k.verb)-1])<<16
	}
	h ^= (uint64(uintptr(unsafe.Pointer(k.op))) ^ v<<32 ^ uint64(k.status)) * 0x9e3779b97f4a7c15
	if k.unknown != "" {
		h ^= bits.RotateLeft64(maphash.String(t.seed, k.unknown), 42)
	}
	return h ^ h>>29
}

// find returns the index of k's entry, or -1 and the free slot to put it in.
func (t *hitTable) find(k *hitKey, sum uint64) (entry int32, slot int) {
	mask := len(t.slots) - 1
	for i := int(sum) & mask; ; i = (i + 1) & mask {
		e := t.slots[i] - 1
		if e < 0 {
			return -1, i
		}
		if t.sums[e] == sum && t.keys[e] == *k {
			return e, i
		}
	}
}

// intern returns the index of ev's hit and the operation it matched.
func (t *hitTable) intern(m *match.Matcher, ev *Event) (int32, *catalog.Operation) {
	method := ev.Method()
	var res match.Result
	m.MatchRequestURIInto(&res, method, ev.RequestURI)
	k := hitKey{op: res.Operation, verb: res.Info.Verb, status: ev.Code(), user: ev.User.Username, userAgent: ev.UserAgent}
	if res.Operation == nil {
		if method == "" {
			method = UnknownMethod
		}
		k.unknown = coverage.UnknownShape(method, res.Info)
	}
	sum := t.hash(&k)
	i, slot := t.find(&k, sum)
	if i >= 0 {
		return i, k.op
	}
	// The event's strings share its line's memory: keep copies.
	k.verb, k.user, k.userAgent = strings.Clone(k.verb), strings.Clone(k.user), strings.Clone(k.userAgent)
	h := coverage.Hit{Verb: k.verb, Status: k.status, Client: clientOf(k.user, k.userAgent), Test: coverage.TestFromUserAgent(k.userAgent)}
	if k.op != nil {
		h.OperationID = k.op.ID
	} else {
		h.Unknown = k.unknown
	}
	i = int32(len(t.hits))
	t.hits = append(t.hits, h)
	t.keys = append(t.keys, k)
	t.sums = append(t.sums, sum)
	t.slots[slot] = i + 1
	if 2*len(t.keys) > len(t.slots) { // at most half full
		t.grow()
	}
	return i, k.op
}

// grow doubles the slots and puts every entry back.
func (t *hitTable) grow() {
	t.slots = make([]int32, 2*len(t.slots))
	mask := len(t.slots) - 1
	for e, sum := range t.sums {
		i := int(sum) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = int32(e) + 1
	}
}
