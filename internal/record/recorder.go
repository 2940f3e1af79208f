package record

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/bodyfields"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// Recorder matches every event against a release and aggregates it locally
// into the delta since the last Take (what is shipped next). What Take handed
// out is kept too, so Total can show everything since the start (the local
// results endpoint). It is an Observer.
type Recorder struct {
	// matching is what requests are matched and bodies read against;
	// SetMatcher replaces it while requests are observed.
	matching atomic.Pointer[matching]
	metrics  *Metrics
	// writes, when set, keeps every write to an object with its body
	// (KeepWrites); run tells this recorder's write IDs from an earlier
	// run's in the same pod.
	writes bool
	run    string

	mu      sync.Mutex
	pending coverage.Delta
	// taken is what earlier Takes returned; merged once per Take, not once
	// per request.
	taken coverage.Delta
	// started holds the IDs of long-running requests counted when their
	// response started, so their completion is not counted again.
	started map[uint64]struct{}
}

// matching is a matcher with the body reader of its catalog: they change
// together.
type matching struct {
	matcher *match.Matcher
	bodies  *bodyWalker
}

// NewRecorder returns a recorder matching against m. metrics may be nil.
func NewRecorder(m *match.Matcher, metrics *Metrics) *Recorder {
	r := &Recorder{metrics: metrics, started: make(map[uint64]struct{}), run: strconv.FormatInt(time.Now().UnixMicro(), 36)}
	r.SetMatcher(m)
	return r
}

// SetMatcher makes the recorder match every request it observes from now on
// against m: a sidecar measuring against the live cluster's API follows the
// custom resources that come and go. What was counted stays as counted.
func (r *Recorder) SetMatcher(m *match.Matcher) {
	r.matching.Store(&matching{matcher: m, bodies: newBodyWalker(m.Catalog())})
}

// KeepWrites makes the recorder keep every write to an object (create,
// update, patch, delete) with its request body, for object provenance
// (coverage.Delta.Writes). The proxy must keep bodies; a session does when
// it records them. It returns r.
func (r *Recorder) KeepWrites() *Recorder {
	r.writes = true
	return r
}

// Observe counts a request once: at ResponseStarted for long-running ones,
// otherwise at ResponseComplete. The body a ResponseComplete event carries
// (the proxy keeps bodies) is read for field coverage (package fields) and
// counted with its request, in the same delta: a delta's bodies of an
// operation never outnumber its requests, which the collector checks. The
// bodies of long-running requests (counted at ResponseStarted, maybe in an
// earlier delta) are not read: watches and upgrades carry none that
// describes an object.
func (r *Recorder) Observe(ev *Event) {
	r.metrics.observe(ev)
	switch ev.Stage {
	case StageResponseStarted:
		r.mu.Lock()
		r.started[ev.ID] = struct{}{}
		r.mu.Unlock()
	case StageResponseComplete:
		r.mu.Lock()
		_, counted := r.started[ev.ID]
		delete(r.started, ev.ID)
		r.mu.Unlock()
		if counted {
			return
		}
	default:
		return
	}
	// Matching needs no lock: the matcher is safe for concurrent use.
	m := r.matching.Load()
	res := m.matcher.Match(ev.Method, ev.Path, ev.RawQuery)
	hit := coverage.NewHit(res, ev.Method, ev.Status, coverage.Client{
		Pod: ev.Client.Pod, Namespace: ev.Client.Namespace, ServiceAccount: ev.Client.ServiceAccount,
		User: ev.Client.User, UserAgent: ev.UserAgent,
	})
	var body bodyfields.Body
	hasBody := ev.Stage == StageResponseComplete && res.Operation != nil && (len(ev.Body) > 0 || ev.BodyTruncated)
	if hasBody {
		// Outside the lock: walking takes microseconds per kilobyte.
		body = m.bodies.walk(res.Operation.ID, ev)
	}
	var w coverage.Write
	// Writes to custom resources the release does not know are kept too:
	// the history of an object needs no operation of the catalog.
	keepWrite := r.writes && ev.Stage == StageResponseComplete
	if keepWrite {
		w, keepWrite = r.write(ev, res.Info)
	}
	r.mu.Lock()
	r.pending.Add(hit)
	if hasBody {
		body.AddTo(&r.pending, 1)
	}
	if keepWrite {
		r.pending.AddWrite(w)
	}
	r.mu.Unlock()
	r.metrics.counted(res.Operation == nil)
	if hasBody {
		r.metrics.body(body.Outcome)
	}
}

// Take returns what was recorded since the last Take and starts anew.
func (r *Recorder) Take() *coverage.Delta {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.pending
	r.pending = coverage.Delta{}
	r.taken.Merge(&d)
	return &d
}

// Total returns a copy of everything recorded since the start.
func (r *Recorder) Total() *coverage.Delta {
	r.mu.Lock()
	defer r.mu.Unlock()
	var d coverage.Delta
	d.Merge(&r.taken)
	d.Merge(&r.pending)
	return &d
}

// Matcher is the matcher the recorder uses now.
func (r *Recorder) Matcher() *match.Matcher { return r.matching.Load().matcher }
