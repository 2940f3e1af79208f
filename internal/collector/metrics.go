package collector

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Results of a batch, the label of BatchesTotal.
const (
	ResultAccepted        = "accepted"
	ResultDuplicate       = "duplicate"
	ResultIgnored         = "ignored"
	ResultUnauthenticated = "unauthenticated"
	ResultForbidden       = "forbidden"
	ResultMalformed       = "malformed"
	ResultReleaseMismatch = "release_mismatch"
	ResultUnavailable     = "unavailable"
	// ResultThrottled is an audit batch answered 429: too many at once.
	ResultThrottled = "throttled"
)

// The manager's metrics about recording, served with controller-runtime's
// on the manager's metrics endpoint.
var (
	// BatchesTotal counts batches from sidecars by what became of them.
	BatchesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apisnoop_collector_batches_total",
		Help: "Batches of recorded requests received from sidecars, by result.",
	}, []string{"result"})
	// RequestsTotal counts the requests in accepted batches.
	RequestsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apisnoop_recorded_requests_total",
		Help: "API requests recorded by sidecars or taken from the audit stream, merged into sessions' results.",
	})
	// AuditBatchesTotal counts the API server's audit webhook batches by
	// what became of them.
	AuditBatchesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apisnoop_audit_batches_total",
		Help: "Audit event batches received from the API server's webhook backend, by result.",
	}, []string{"result"})
	// AuditEventsTotal counts the audit events in accepted batches, every
	// stage and duplicate included.
	AuditEventsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apisnoop_audit_events_total",
		Help: "Audit events in accepted batches, every stage and duplicate included.",
	})
	// AuditBodiesTotal counts the request bodies (requestObject) of counted
	// audit requests by what became of them, once per catalog they are
	// read against (sessions of one release share it).
	AuditBodiesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apisnoop_audit_request_bodies_total",
		Help: "Request bodies of counted audit requests, per catalog read against, by result: walked, malformed or unread (no schema, not JSON).",
	}, []string{"result"})
	// Sessions counts sessions by phase (recording, suspended, completed,
	// waiting).
	Sessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apisnoop_sessions",
		Help: "SnoopSessions by phase.",
	}, []string{"phase"})
	// OperationsHit is each session's operations hit, per stability level.
	OperationsHit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apisnoop_session_operations_hit",
		Help: "Operations of the session's release hit by recorded requests, per level.",
	}, []string{"namespace", "session", "level"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(BatchesTotal, RequestsTotal, AuditBatchesTotal, AuditEventsTotal, AuditBodiesTotal, Sessions, OperationsHit)
}
