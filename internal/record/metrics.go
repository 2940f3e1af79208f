package record

import (
	"bufio"
	"io"
	"math"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/procstat"
)

// Metrics are the proxy's Prometheus metrics. No label carries a value the
// client chose (path, user agent, names), so nothing a client sends can
// reach the metrics.
//
// They are written in Prometheus' text format by the few lines below rather
// than with client_golang: its registry, collectors and protobuf encoding
// were about 4 MiB of the sidecar's resident memory, in every recorded pod,
// for eight counters and a histogram. Updates are atomic adds, so the
// per-request cost is a few nanoseconds.
type Metrics struct {
	requests    labelled
	duration    histogram
	bytes       labelled
	watchEvents atomic.Int64
	connections labelled
	unknown     atomic.Int64
	bodies      labelled
	batches     labelled
	overflow    atomic.Int64
	pending     atomic.Int64
}

// NewMetrics returns the proxy's metrics, all zero.
func NewMetrics() *Metrics {
	return &Metrics{duration: newHistogram(0.0005, 4, 10)}
}

func (m *Metrics) observe(ev *Event) {
	if m == nil || ev.Stage != StageResponseComplete {
		return
	}
	m.requests.add(coverage.StatusClass(ev.Status), 1)
	m.duration.observe(ev.Duration.Seconds())
	m.bytes.add("in", ev.BytesIn)
	m.bytes.add("out", ev.BytesOut)
	m.watchEvents.Add(ev.WatchEvents)
}

// Connection counts a client connection by how the proxy served it:
// "relayed", "fallback" (to the reverse proxy, the API server being out of
// reach when it arrived), and once more as "unreadable" when a relayed
// connection's bytes could not be read as HTTP from some point on, so its
// later requests went unrecorded.
func (m *Metrics) Connection(outcome string) {
	if m != nil {
		m.connections.add(outcome, 1)
	}
}

func (m *Metrics) counted(unknown bool) {
	if m != nil && unknown {
		m.unknown.Add(1)
	}
}

func (m *Metrics) body(outcome bodyOutcome) {
	if m != nil {
		m.bodies.add(string(outcome), 1)
	}
}

func (m *Metrics) shipped(result string) {
	if m != nil {
		m.batches.add(result, 1)
	}
}

func (m *Metrics) setPending(requests int64) {
	if m != nil {
		m.pending.Store(requests)
	}
}

func (m *Metrics) droppedDetails(requests int64) {
	if m != nil {
		m.overflow.Add(requests)
	}
}

// WriteTo writes every metric in Prometheus' text exposition format
// (version 0.0.4), then the Go runtime's and the process' own.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	out := &expositionWriter{w: bufio.NewWriter(w)}
	out.labelled("apisnoop_proxy_requests_total", "Requests proxied, by status class.", "counter", "code", &m.requests)
	out.histogram("apisnoop_proxy_request_duration_seconds", "Duration of completed proxied requests.", &m.duration)
	out.labelled("apisnoop_proxy_body_bytes_total", "Body bytes proxied, by direction (in: from clients, out: to clients).", "counter", "direction", &m.bytes)
	out.labelled("apisnoop_proxy_connections_total",
		"Client connections by how they were served: relayed, or fallback (to the reverse proxy, the API server being out of reach when they arrived); relayed connections whose bytes could not be read as HTTP from some point on (later requests went unrecorded) are counted again as unreadable.",
		"counter", "served", &m.connections)
	out.single("apisnoop_proxy_watch_events_total", "Watch events streamed to clients.", "counter", float64(m.watchEvents.Load()))
	out.single("apisnoop_record_unknown_requests_total", "Requests that match no operation of the release.", "counter", float64(m.unknown.Load()))
	out.labelled("apisnoop_record_request_bodies_total",
		"Kept request bodies of known operations, by what became of them: walked for field coverage, malformed, truncated at the cap (both counted as malformed), or unread (not JSON, no schema).",
		"counter", "result", &m.bodies)
	out.labelled("apisnoop_ship_batches_total", "Delta batches sent to the collector, by result.", "counter", "result", &m.batches)
	out.single("apisnoop_ship_dropped_details_total",
		"Requests whose detail (client or unknown shape) was dropped because a buffered delta reached its bounds; they stay in every total.",
		"counter", float64(m.overflow.Load()))
	out.single("apisnoop_ship_pending_requests", "Requests recorded but not yet accepted by the collector.", "gauge", float64(m.pending.Load()))
	out.runtime()
	return out.n, out.flush()
}

// labelled is a counter with one label, whose values the code chooses.
type labelled struct {
	values sync.Map // label value -> *atomic.Int64
}

func (l *labelled) add(value string, delta int64) {
	c, ok := l.values.Load(value)
	if !ok {
		c, _ = l.values.LoadOrStore(value, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(delta)
}

// histogram counts observations in buckets with the upper bounds bounds
// (cumulated when written, as Prometheus wants).
type histogram struct {
	bounds  []float64
	counts  []atomic.Int64 // one per bound, and one above the last
	sumBits atomic.Uint64  // float64 bits of the sum
}

// newHistogram has count exponential buckets from start, each factor wider.
func newHistogram(start, factor float64, count int) histogram {
	bounds := make([]float64, count)
	for i := range bounds {
		bounds[i] = start
		start *= factor
	}
	return histogram{bounds: bounds, counts: make([]atomic.Int64, count+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // the first bound >= v
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// expositionWriter writes metric families, keeping the first error.
type expositionWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (e *expositionWriter) write(parts ...string) {
	for _, p := range parts {
		if e.err != nil {
			return
		}
		var k int
		k, e.err = e.w.WriteString(p)
		e.n += int64(k)
	}
}

func (e *expositionWriter) flush() error {
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

func (e *expositionWriter) header(name, help, kind string) {
	e.write("# HELP ", name, " ", help, "\n# TYPE ", name, " ", kind, "\n")
}

func (e *expositionWriter) single(name, help, kind string, value float64) {
	e.header(name, help, kind)
	e.write(name, " ", formatFloat(value), "\n")
}

func (e *expositionWriter) labelled(name, help, kind, label string, l *labelled) {
	var values []string
	l.values.Range(func(k, _ any) bool {
		values = append(values, k.(string))
		return true
	})
	if len(values) == 0 {
		return // as client_golang: a vector without children is not written
	}
	slices.Sort(values)
	e.header(name, help, kind)
	for _, v := range values {
		c, _ := l.values.Load(v)
		e.write(name, "{", label, `="`, escapeLabelValue(v), `"} `, strconv.FormatInt(c.(*atomic.Int64).Load(), 10), "\n")
	}
}

func (e *expositionWriter) histogram(name, help string, h *histogram) {
	e.header(name, help, "histogram")
	var cumulative int64
	for i, bound := range h.bounds {
		cumulative += h.counts[i].Load()
		e.write(name, `_bucket{le="`, formatFloat(bound), `"} `, strconv.FormatInt(cumulative, 10), "\n")
	}
	cumulative += h.counts[len(h.bounds)].Load()
	e.write(name, `_bucket{le="+Inf"} `, strconv.FormatInt(cumulative, 10), "\n")
	e.write(name, "_sum ", formatFloat(math.Float64frombits(h.sumBits.Load())), "\n")
	e.write(name, "_count ", strconv.FormatInt(cumulative, 10), "\n")
}

// runtimeSamples are the Go runtime's figures written as go_* metrics.
var runtimeSamples = []struct{ metric, name, help string }{
	{"/sched/goroutines:goroutines", "go_goroutines", "Number of goroutines that currently exist."},
	{"/memory/classes/heap/objects:bytes", "go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use."},
	{"/memory/classes/total:bytes", "go_memstats_sys_bytes", "Number of bytes obtained from system."},
}

// runtime writes the Go runtime's and the process' own figures, under the
// names client_golang's Go and process collectors give them.
func (e *expositionWriter) runtime() {
	samples := make([]metrics.Sample, len(runtimeSamples))
	for i, s := range runtimeSamples {
		samples[i].Name = s.metric
	}
	metrics.Read(samples)
	for i, s := range runtimeSamples {
		if samples[i].Value.Kind() == metrics.KindUint64 {
			e.single(s.name, s.help, "gauge", float64(samples[i].Value.Uint64()))
		}
	}
	if st, err := procstat.ReadStat(os.Getpid()); err == nil {
		e.single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", st.CPU().Seconds())
	}
	if mem, err := procstat.MemoryMiB(os.Getpid()); err == nil {
		e.single("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", mem["VmRSS"]*(1<<20))
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		e.single("process_open_fds", "Number of open file descriptors.", "gauge", float64(len(fds)))
	}
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// escapeLabelValue escapes what the text format requires in a label value.
func escapeLabelValue(v string) string {
	var b []byte
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '"', '\n':
			if b == nil {
				b = append(make([]byte, 0, len(v)+2), v[:i]...)
			}
			if c == '\n' {
				b = append(b, '\\', 'n')
			} else {
				b = append(b, '\\', c)
			}
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	if b == nil {
		return v
	}
	return string(b)
}
