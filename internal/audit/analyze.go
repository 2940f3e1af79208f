package audit

import (
	"context"
	"io"
	"strings"
	"sync"

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
		schemas    = schemaLoader(m.Catalog())
	)
	newWorker := func() func(*Event) hitRef {
		t := &hitTable{index: make(map[hitKey]int32)}
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
		bodies[r.worker].bodies[r.body].addTo(d, bodyCounts[r.worker][r.body])
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
// of an unknown request).
type hitTable struct {
	index map[hitKey]int32
	hits  []coverage.Hit
}

type hitKey struct {
	op              *catalog.Operation
	unknown, verb   string
	status          int
	user, userAgent string
}

// intern returns the index of ev's hit and the operation it matched.
func (t *hitTable) intern(m *match.Matcher, ev *Event) (int32, *catalog.Operation) {
	method := ev.Method()
	res := m.MatchRequestURI(method, ev.RequestURI)
	k := hitKey{op: res.Operation, verb: res.Info.Verb, status: ev.Code(), user: ev.User.Username, userAgent: ev.UserAgent}
	if res.Operation == nil {
		if method == "" {
			method = UnknownMethod
		}
		k.unknown = coverage.UnknownShape(method, res.Info)
	}
	if i, ok := t.index[k]; ok {
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
	i := int32(len(t.hits))
	t.hits = append(t.hits, h)
	t.index[k] = i
	return i, k.op
}
