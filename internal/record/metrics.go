package record

import (
	"github.com/prometheus/client_golang/prometheus"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// Metrics are the proxy's Prometheus metrics. No label carries a value the
// client chose (path, user agent, names), so nothing a client sends can
// reach the metrics.
type Metrics struct {
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	duration    prometheus.Histogram
	bytes       *prometheus.CounterVec
	watchEvents prometheus.Counter
	unknown     prometheus.Counter
	bodies      *prometheus.CounterVec
	batches     *prometheus.CounterVec
	overflow    prometheus.Counter
	pending     prometheus.Gauge
}

// NewMetrics registers the metrics in a registry of their own, with the Go
// and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apisnoop_proxy_requests_total", Help: "Requests proxied, by status class.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "apisnoop_proxy_request_duration_seconds", Help: "Duration of completed proxied requests.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apisnoop_proxy_body_bytes_total", Help: "Body bytes proxied, by direction (in: from clients, out: to clients).",
		}, []string{"direction"}),
		watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apisnoop_proxy_watch_events_total", Help: "Watch events streamed to clients.",
		}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apisnoop_record_unknown_requests_total", Help: "Requests that match no operation of the release.",
		}),
		bodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apisnoop_record_request_bodies_total",
			Help: "Kept request bodies of known operations, by what became of them: walked for field coverage, malformed, truncated at the cap (both counted as malformed), or unread (not JSON, no schema).",
		}, []string{"result"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apisnoop_ship_batches_total", Help: "Delta batches sent to the collector, by result.",
		}, []string{"result"}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apisnoop_ship_dropped_details_total",
			Help: "Requests whose detail (client or unknown shape) was dropped because a buffered delta reached its bounds; they stay in every total.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apisnoop_ship_pending_requests", Help: "Requests recorded but not yet accepted by the collector.",
		}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.bytes, m.watchEvents, m.unknown, m.bodies, m.batches, m.overflow, m.pending,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) observe(ev *Event) {
	if m == nil || ev.Stage != StageResponseComplete {
		return
	}
	m.requests.WithLabelValues(coverage.StatusClass(ev.Status)).Inc()
	m.duration.Observe(ev.Duration.Seconds())
	m.bytes.WithLabelValues("in").Add(float64(ev.BytesIn))
	m.bytes.WithLabelValues("out").Add(float64(ev.BytesOut))
	m.watchEvents.Add(float64(ev.WatchEvents))
}

func (m *Metrics) counted(unknown bool) {
	if m != nil && unknown {
		m.unknown.Inc()
	}
}

func (m *Metrics) body(outcome bodyOutcome) {
	if m != nil {
		m.bodies.WithLabelValues(string(outcome)).Inc()
	}
}

func (m *Metrics) shipped(result string) {
	if m != nil {
		m.batches.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) setPending(requests int64) {
	if m != nil {
		m.pending.Set(float64(requests))
	}
}

func (m *Metrics) droppedDetails(requests int64) {
	if m != nil {
		m.overflow.Add(float64(requests))
	}
}
