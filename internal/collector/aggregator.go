package collector

import (
	"errors"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/results"
)

// errNotRestored answers batches for a session whose persisted results are
// not loaded yet: merging before would lose what was persisted, or count it
// twice. The sidecar retries.
var errNotRestored = errors.New("the session's results are not loaded yet")

// Aggregator holds every session's results in memory, between the intake,
// which merges batches in, and the results controller, which restores them
// at start and persists them.
type Aggregator struct {
	// Changed is told the session whose results changed or need loading,
	// as an event a controller's channel source takes;
	// the results controller watches it. Sends never block.
	Changed chan event.GenericEvent

	mu       sync.Mutex
	sessions map[types.NamespacedName]*sessionResults
	started  time.Time
}

type sessionResults struct {
	state     results.State
	lastBatch time.Time // when a batch for the session last arrived
	restored  bool
	version   uint64 // counts changes
	persisted uint64 // the version last persisted
	waiters   []waiter
}

type waiter struct {
	version uint64
	done    chan error
}

// NewAggregator returns an empty aggregator.
func NewAggregator() *Aggregator {
	return &Aggregator{Changed: make(chan event.GenericEvent, 1024), sessions: map[types.NamespacedName]*sessionResults{}, started: time.Now()}
}

// Accept merges a batch into a session's results (or, when ignore is set,
// only counts its requests as ignored: the session stopped or is
// suspended). A batch whose sequence its source has had already changes
// nothing. The returned channel yields once results that include the batch
// are persisted (nil) or failed to be (the error).
func (a *Aggregator) Accept(session types.NamespacedName, b intake.Batch, ignore bool) (duplicate bool, persisted <-chan error, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.restored(session)
	s.lastBatch = time.Now() // sidecars are alive, even if the batch waits
	if err != nil {
		return false, nil, err
	}
	if b.Seq <= s.state.Sources[b.Source] {
		duplicate = true // merged before; answer once that is persisted
	} else {
		if ignore {
			s.state.Ignored += b.Delta.Requests
		} else {
			b.Delta.PrefixWriteIDs(b.Source + "/")
			s.state.Delta.Merge(b.Delta)
		}
		if s.state.Sources == nil {
			s.state.Sources = map[string]uint64{}
		}
		s.state.Sources[b.Source] = b.Seq
		s.version++
	}
	return duplicate, a.untilPersisted(session, s), nil
}

// MergeAudit merges requests of the audit stream into a session's results.
// The audit sink counts each request once before it comes here, so there is
// no sequence to check. The returned channel is Accept's.
func (a *Aggregator) MergeAudit(session types.NamespacedName, d *coverage.Delta) (persisted <-chan error, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.restored(session)
	if err != nil {
		return nil, err
	}
	if d.Requests > 0 {
		s.state.Delta.Merge(d)
		s.version++
	}
	return a.untilPersisted(session, s), nil
}

// restored returns a session's results and errNotRestored (asking for them
// to be loaded) until they are. a.mu is held.
func (a *Aggregator) restored(session types.NamespacedName) (*sessionResults, error) {
	s := a.session(session)
	if !s.restored {
		a.notify(session)
		return s, errNotRestored
	}
	return s, nil
}

// untilPersisted returns a channel that yields once the session's current
// version is persisted, or why it was not.
func (a *Aggregator) untilPersisted(session types.NamespacedName, s *sessionResults) <-chan error {
	done := make(chan error, 1)
	if s.persisted >= s.version {
		done <- nil
	} else {
		s.waiters = append(s.waiters, waiter{version: s.version, done: done})
		a.notify(session)
	}
	return done
}

// LastBatch is when a batch for the session last arrived, from any of its
// sidecars, or when the aggregator started if none has since: sidecars
// back off while the manager is away, and get a grace period after it
// returns.
func (a *Aggregator) LastBatch(session types.NamespacedName) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sessions[session]; ok && s.lastBatch.After(a.started) {
		return s.lastBatch
	}
	return a.started
}

// Restore installs a session's persisted results, once: later calls (a
// restore racing an earlier one) change nothing.
func (a *Aggregator) Restore(session types.NamespacedName, st *results.State) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.session(session)
	if s.restored {
		return
	}
	if st != nil {
		s.state = *st
	}
	s.restored = true
}

// Restored reports whether a session's results are loaded.
func (a *Aggregator) Restored(session types.NamespacedName) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[session]
	return ok && s.restored
}

// Writes are the writes a session kept (coverage.Delta.Writes) and how many
// older ones it dropped, without copying the rest of its results. The
// elements are copied; their bodies are never changed once kept.
func (a *Aggregator) Writes(session types.NamespacedName) ([]coverage.Write, int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := &a.session(session).state.Delta
	return slices.Clone(d.Writes), d.WritesDropped
}

// Snapshot is a copy of a session's results and their version.
func (a *Aggregator) Snapshot(session types.NamespacedName) (st results.State, version uint64, dirty bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.session(session)
	st.Delta.Merge(&s.state.Delta)
	st.Ignored = s.state.Ignored
	st.Sources = make(map[string]uint64, len(s.state.Sources))
	for k, v := range s.state.Sources {
		st.Sources[k] = v
	}
	return st, s.version, s.version > s.persisted
}

// Persisted records that a snapshot's version was written (err nil) or not,
// and answers the batches waiting for it. After a failure the waiters get
// the error; their sidecars retry and find their batches merged, and wait
// for the next write.
func (a *Aggregator) Persisted(session types.NamespacedName, version uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[session]
	if !ok {
		return // forgotten meanwhile: its waiters were told
	}
	if err == nil && version > s.persisted {
		s.persisted = version
	}
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		switch {
		case err != nil:
			w.done <- err
		case w.version <= s.persisted:
			w.done <- nil
		default:
			kept = append(kept, w)
		}
	}
	s.waiters = kept
}

// Forget drops a deleted session's results; waiting batches are told.
func (a *Aggregator) Forget(session types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sessions[session]; ok {
		for _, w := range s.waiters {
			w.done <- errors.New("the session was deleted")
		}
		delete(a.sessions, session)
	}
}

func (a *Aggregator) session(key types.NamespacedName) *sessionResults {
	s, ok := a.sessions[key]
	if !ok {
		s = &sessionResults{}
		a.sessions[key] = s
	}
	return s
}

// notify tells the results controller, without blocking: a full channel
// means it has work queued already, and it looks at every session it is
// told about and at every session event.
func (a *Aggregator) notify(session types.NamespacedName) {
	select {
	case a.Changed <- event.GenericEvent{Object: &snoopv1alpha1.SnoopSession{ObjectMeta: metav1.ObjectMeta{Namespace: session.Namespace, Name: session.Name}}}:
	default:
	}
}
