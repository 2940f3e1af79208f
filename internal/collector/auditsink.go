package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/auditscope"
	"apisnoop.dev/kube-apisnoop/internal/bodyfields"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// AuditPath is where the manager takes the API server's audit webhook
// backend's batches.
const AuditPath = "/audit"

// AuditWriteAction is what a caller of the audit sink must be allowed: to
// create auditevents in the snoop.apisnoop.dev group, a resource no API
// serves, granted by RBAC like any other (the chart's
// apisnoop-audit-writer ClusterRole).
var AuditWriteAction = Action{
	Group: snoopv1alpha1.GroupVersion.Group, Resource: "auditevents", Verb: "create",
	Describe: "create auditevents." + snoopv1alpha1.GroupVersion.Group,
}

// Defaults of AuditSink's bounds.
const (
	// DefaultAuditMaxBytes caps a batch's body: the API server's default
	// batch of 400 events at Metadata level is about 0.4 MB; events with
	// bodies are larger.
	DefaultAuditMaxBytes = 16 << 20
	// DefaultAuditMaxBytesInFlight bounds the bodies of the batches taken
	// at once (each waits until its results are persisted, up to the
	// results controller's interval, so many wait together); beyond it a
	// batch is answered 429 with Retry-After, which the API server's
	// webhook backend retries after a backoff.
	DefaultAuditMaxBytesInFlight = 32 << 20
	// DefaultAuditWindow and DefaultAuditMaxOpen bound the sink's Deduper:
	// the audit IDs of the last 131,072 to 262,144 requests counted (a
	// retried batch comes back within seconds), and 16,384 requests open
	// at once (watches between their ResponseStarted and ResponseComplete).
	DefaultAuditWindow  = 1 << 18
	DefaultAuditMaxOpen = 1 << 14
)

// AuditSink serves AuditPath: the API server's audit webhook backend in
// batch mode (--audit-webhook-config-file, --audit-webhook-mode=batch)
// POSTs audit.k8s.io/v1 EventLists here. Each request counts once however
// its stages and retried batches arrive (audit.Deduper), in every session
// with spec.source "audit" that is Active and whose spec.audit selects it.
// A request whose event carries a requestObject (a policy at Request or
// RequestResponse level) also adds its body's field coverage, read as
// `kubectl snoop coverage --audit-log` reads it (audit.BodyKind), with the
// event the request counts at.
//
// A batch is answered 200 once the results that include it are persisted.
// The sink answers 429 (too many batches at once), 503 (not the leader,
// results not loaded, the API server unreachable) with Retry-After; the API
// server's webhook backend retries those with backoff, and a batch merged
// before its answer failed is not counted twice when it comes back. The
// caller's token must be allowed AuditWriteAction.
type AuditSink struct {
	// Client reads SnoopSessions, from the manager's cache.
	Client     client.Reader
	Aggregator *Aggregator
	Releases   Releases
	Access     *Access
	// Namespaces are where audit sessions are taken: the controller stops
	// the others, and the sink counts nothing for them even while their
	// status still says Ready.
	Namespaces auditscope.Namespaces
	// Elected is closed once this replica leads; only the leader merges.
	// Nil means always.
	Elected <-chan struct{}
	// MaxBytes, MaxBytesInFlight, Window and MaxOpen bound the sink (zero:
	// the defaults above).
	MaxBytes, MaxBytesInFlight int64
	Window, MaxOpen            int
	// PersistTimeout bounds the wait for a batch's results to be
	// persisted; zero means 8 seconds.
	PersistTimeout time.Duration
	// Now is the clock sessions' stop times are read against; nil is
	// time.Now.
	Now func() time.Time

	initOnce sync.Once
	started  time.Time

	flightMu      sync.Mutex
	bytesInFlight int64

	mu sync.Mutex // guards what follows
	// dedup holds its open requests' events by value: a pointer into a
	// batch would keep the whole batch.
	dedup     *audit.Deduper[audit.Event]
	counted   []audit.Event // what the Deduper counted in this batch
	catalogs  map[*catalog.Catalog]*auditCatalog
	lastEvent time.Time
	stats     AuditSinkStats
}

// AuditSinkStats counts what the sink took.
type AuditSinkStats struct {
	Batches, Events, Malformed int64
	Dedup                      audit.DedupStats
}

// eventList is the part of an audit.k8s.io/v1 EventList the sink reads.
type eventList struct {
	Kind       string        `json:"kind"`
	APIVersion string        `json:"apiVersion"`
	Items      []audit.Event `json:"items"`
}

func (s *AuditSink) init() {
	s.initOnce.Do(func() {
		if s.MaxBytes <= 0 {
			s.MaxBytes = DefaultAuditMaxBytes
		}
		if s.MaxBytesInFlight <= 0 {
			s.MaxBytesInFlight = DefaultAuditMaxBytesInFlight
		}
		s.MaxBytesInFlight = max(s.MaxBytesInFlight, s.MaxBytes)
		window, maxOpen := s.Window, s.MaxOpen
		if window <= 0 {
			window = DefaultAuditWindow
		}
		if maxOpen <= 0 {
			maxOpen = DefaultAuditMaxOpen
		}
		s.dedup = audit.NewDeduper(window, maxOpen, func(ev audit.Event) { s.counted = append(s.counted, ev) })
		s.catalogs = map[*catalog.Catalog]*auditCatalog{}
		s.started = s.now()
	})
}

func (s *AuditSink) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// LastEvent is when an audit batch last reached the sink, or when the sink
// started if none has: audit sessions are Degraded when the API server
// sends nothing for long.
func (s *AuditSink) LastEvent() time.Time {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastEvent.IsZero() {
		return s.started
	}
	return s.lastEvent
}

// Stats returns what the sink took so far.
func (s *AuditSink) Stats() AuditSinkStats {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Dedup = s.dedup.Stats()
	return st
}

func (s *AuditSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	result, status, err := s.serve(r)
	AuditBatchesTotal.WithLabelValues(result).Inc()
	if err != nil {
		log := ctrl.LoggerFrom(r.Context())
		if status == http.StatusTooManyRequests || status >= 500 {
			w.Header().Set("Retry-After", "1")
			log.V(1).Info("Audit batch not taken", "result", result, "error", err.Error())
		} else {
			log.Info("Audit batch refused", "result", result, "error", err.Error())
		}
		writeStatus(w, status, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *AuditSink) serve(r *http.Request) (result string, status int, err error) {
	ctx := r.Context()
	if s.Elected != nil {
		select {
		case <-s.Elected:
		default:
			return ResultUnavailable, http.StatusServiceUnavailable, errors.New("this manager replica is not the leader")
		}
	}
	if r.ContentLength > s.MaxBytes {
		return ResultMalformed, http.StatusRequestEntityTooLarge, fmt.Errorf("the batch has %d bytes, more than the %d taken", r.ContentLength, s.MaxBytes)
	}
	release, ok := s.take(r.ContentLength)
	if !ok {
		return ResultThrottled, http.StatusTooManyRequests, fmt.Errorf("%d MiB of audit batches are being taken; retry", s.MaxBytesInFlight>>20)
	}
	defer release()
	switch status, msg := s.Access.Admit(r, AuditWriteAction); status {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return ResultUnauthenticated, status, errors.New(msg)
	case http.StatusForbidden:
		return ResultForbidden, status, errors.New(msg)
	default:
		return ResultUnavailable, status, errors.New(msg)
	}
	list, err := s.read(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return ResultMalformed, http.StatusRequestEntityTooLarge, err
		}
		return ResultMalformed, http.StatusBadRequest, err
	}
	sessions, err := s.sessions(ctx)
	if err != nil {
		return ResultUnavailable, http.StatusServiceUnavailable, err
	}
	// What could refuse the batch is checked before it goes through the
	// Deduper, which would take a retried batch's events as duplicates;
	// after it, only persisting may fail, and the requests are merged by
	// then.
	deltas := s.count(list.Items, sessions)
	return s.merge(ctx, sessions, deltas, list)
}

// take reserves room for a batch of length bytes (unknown: the most a
// batch may have) within MaxBytesInFlight.
func (s *AuditSink) take(length int64) (release func(), ok bool) {
	if length <= 0 {
		length = s.MaxBytes
	}
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	if s.bytesInFlight+length > s.MaxBytesInFlight {
		return nil, false
	}
	s.bytesInFlight += length
	return func() {
		s.flightMu.Lock()
		s.bytesInFlight -= length
		s.flightMu.Unlock()
	}, true
}

// read decodes the batch.
func (s *AuditSink) read(r *http.Request) (*eventList, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.MaxBytes))
	if err != nil {
		return nil, fmt.Errorf("read audit batch: %w", err)
	}
	list := &eventList{}
	if err := json.Unmarshal(body, list); err != nil {
		return nil, fmt.Errorf("decode audit batch: %w", err)
	}
	if list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
		return nil, fmt.Errorf("want an audit.k8s.io/v1 EventList, got kind %q apiVersion %q", list.Kind, list.APIVersion)
	}
	return list, nil
}

// auditSession is a session the stream feeds, with what matching needs.
type auditSession struct {
	key      types.NamespacedName
	selector *auditscope.Selector
	catalog  *auditCatalog
}

// sessions are the Active audit sessions, their results loaded and their
// release's matcher at hand.
func (s *AuditSink) sessions(ctx context.Context) ([]auditSession, error) {
	var list snoopv1alpha1.SnoopSessionList
	if err := s.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list SnoopSessions: %w", err)
	}
	now := s.now()
	var out []auditSession
	for i := range list.Items {
		session := &list.Items[i]
		if !s.takes(session, now) {
			continue
		}
		key := client.ObjectKeyFromObject(session)
		if !s.Aggregator.Restored(key) {
			s.Aggregator.notify(key)
			return nil, fmt.Errorf("the results of snoopsession %s are not loaded yet", key)
		}
		cat, err := s.Releases.Resolve(ctx, session.Spec.KubernetesRelease)
		if err != nil {
			return nil, fmt.Errorf("resolve release %s of snoopsession %s: %w", session.Spec.KubernetesRelease, key, err)
		}
		out = append(out, auditSession{key: key, selector: auditscope.NewSelector(session), catalog: s.catalog(cat)})
	}
	return out, nil
}

// takes reports whether the sink counts requests for session at time now:
// an audit session, Active, in a namespace that may take the audit stream.
// The namespace is checked here as well as by the controller, because the
// status that makes a session Active is not proof of where it may record.
func (s *AuditSink) takes(session *snoopv1alpha1.SnoopSession, now time.Time) bool {
	return !targets.RecordsPods(session) && targets.Active(session, now) && s.Namespaces.Allows(session.Namespace)
}

// auditCatalog is what the sink keeps of a release's catalog: its matcher,
// and a reader of request bodies against its schemas, loaded when the first
// body arrives (a policy at Metadata level never loads them). Batches are
// counted concurrently; the reader is safe for that.
type auditCatalog struct {
	cat     *catalog.Catalog
	matcher *match.Matcher
	bodies  *bodyfields.Reader
}

func (s *AuditSink) catalog(cat *catalog.Catalog) *auditCatalog {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.catalogs[cat]
	if !ok {
		if len(s.catalogs) > 16 {
			clear(s.catalogs) // old cluster catalogs
		}
		c = &auditCatalog{cat: cat, matcher: match.New(cat), bodies: bodyfields.NewReader(cat)}
		s.catalogs[cat] = c
	}
	return c
}

// walk reads ev's requestObject, a request of operationID, as package
// audit's reader does, and counts it in the sink's metric. A catalog
// without schemas, an operation without a body schema, and an apply patch
// written as YAML add nothing.
func (c *auditCatalog) walk(ev *audit.Event, operationID string) bodyfields.Body {
	b := bodyfields.Body{Outcome: bodyfields.Unread, OperationID: operationID}
	if operationID == "" || len(ev.RequestObject) == 0 || string(ev.RequestObject) == "null" {
		return b
	}
	if op, ok := c.cat.Operation(operationID); ok && c.bodies.Reads(operationID) {
		b = c.bodies.Read(operationID, audit.BodyKind(ev, &op), ev.RequestObject)
	}
	AuditBodiesTotal.WithLabelValues(string(b.Outcome)).Inc()
	return b
}

// count passes the batch through the Deduper and adds each request it
// counts, with its body's fields, to the deltas of the sessions that select
// it. Only the Deduper is under s.mu: matching and walking run for several
// batches at once.
func (s *AuditSink) count(items []audit.Event, sessions []auditSession) []coverage.Delta {
	counted := s.dedupe(items)
	deltas := make([]coverage.Delta, len(sessions))
	// A body is walked once per catalog, however many sessions share it.
	walked := make(map[*auditCatalog]*bodyfields.Body, 1)
	for i := range counted {
		ev := &counted[i]
		ns := ev.ObjectNamespace()
		clear(walked)
		for i, session := range sessions {
			if !session.selector.Matches(ev.User.Username, ns, ev.UserAgent) {
				continue
			}
			hit := audit.Hit(session.catalog.matcher, ev)
			deltas[i].Add(hit)
			if ev.RequestObject == nil || hit.OperationID == "" {
				continue
			}
			b, ok := walked[session.catalog]
			if !ok {
				body := session.catalog.walk(ev, hit.OperationID)
				b = &body
				walked[session.catalog] = b
			}
			b.AddTo(&deltas[i], 1)
		}
	}
	return deltas
}

// dedupe passes the batch through the Deduper and returns the events it
// counted.
func (s *AuditSink) dedupe(items []audit.Event) []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Batches++
	s.lastEvent = s.now()
	for i := range items {
		ev := &items[i]
		if ev.AuditID == "" || ev.Stage == "" || ev.RequestURI == "" {
			s.stats.Malformed++
			continue
		}
		s.stats.Events++
		s.dedup.Add(ev.AuditID, ev.Stage, *ev)
	}
	counted := s.counted
	s.counted = nil
	return counted
}

// merge hands the deltas to the aggregator and waits until they are
// persisted.
func (s *AuditSink) merge(ctx context.Context, sessions []auditSession, deltas []coverage.Delta, list *eventList) (string, int, error) {
	timeout := s.PersistTimeout
	if timeout == 0 {
		timeout = 8 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Every session gets its requests before any wait: once counted, a
	// batch's events are duplicates to the Deduper, so a session left out
	// here would lose them for good when the batch is retried.
	var requests int64
	waits := make([]<-chan error, 0, len(sessions))
	var mergeErr error
	for i, session := range sessions {
		persisted, err := s.Aggregator.MergeAudit(session.key, &deltas[i])
		if err != nil {
			// Only a session deleted since sessions() looked: its
			// results are gone anyway.
			mergeErr = errors.Join(mergeErr, err)
			continue
		}
		requests += deltas[i].Requests
		waits = append(waits, persisted)
	}
	if mergeErr != nil {
		return ResultUnavailable, http.StatusServiceUnavailable, mergeErr
	}
	for i, persisted := range waits {
		select {
		case err := <-persisted:
			if err != nil {
				return ResultUnavailable, http.StatusServiceUnavailable, fmt.Errorf("persist results of %s: %w", sessions[i].key, err)
			}
		case <-deadline.C:
			return ResultUnavailable, http.StatusServiceUnavailable, errors.New("results not persisted in time")
		case <-ctx.Done():
			return ResultUnavailable, http.StatusServiceUnavailable, ctx.Err()
		}
	}
	AuditEventsTotal.Add(float64(len(list.Items)))
	RequestsTotal.Add(float64(requests))
	return ResultAccepted, http.StatusOK, nil
}

// statusReasons are the metav1.Status reasons of the sink's answers.
var statusReasons = map[int]metav1.StatusReason{
	http.StatusTooManyRequests:       metav1.StatusReasonTooManyRequests,
	http.StatusServiceUnavailable:    metav1.StatusReasonServiceUnavailable,
	http.StatusUnauthorized:          metav1.StatusReasonUnauthorized,
	http.StatusForbidden:             metav1.StatusReasonForbidden,
	http.StatusBadRequest:            metav1.StatusReasonBadRequest,
	http.StatusRequestEntityTooLarge: metav1.StatusReasonRequestEntityTooLarge,
}

// writeStatus answers with a metav1.Status, which the API server's webhook
// client reads (a 429's Retry-After included) as an API error.
func writeStatus(w http.ResponseWriter, code int, message string) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Message: message,
	}
	if code == http.StatusTooManyRequests || code >= 500 {
		st.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
	}
	st.Reason = statusReasons[code]
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(st)
}
