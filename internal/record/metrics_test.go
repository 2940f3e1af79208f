package record

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the admin handler's /metrics with Prometheus' own text
// parser, so a format error fails the test as it would fail a scrape.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	AdminHandler(m).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, rec.Body.String())
	}
	return families
}

// value is the counter or gauge of family with the label value (empty for
// a metric without labels); -1 when there is none.
func value(families map[string]*dto.MetricFamily, family, label string) float64 {
	f := families[family]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
			continue
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	if got := scrape(t, m); got["apisnoop_proxy_requests_total"] != nil || value(got, "apisnoop_proxy_watch_events_total", "") != 0 {
		t.Errorf("fresh metrics: requests %v, watch events %v; want no series and 0", got["apisnoop_proxy_requests_total"], value(got, "apisnoop_proxy_watch_events_total", ""))
	}
	for i, status := range []int{200, 201, 404, 503, 101, 200} {
		m.observe(&Event{Stage: StageResponseComplete, Status: status, Duration: time.Duration(i+1) * time.Millisecond, BytesIn: 10, BytesOut: 100, WatchEvents: int64(i)})
	}
	m.observe(&Event{Stage: StageResponseStarted, Status: 200}) // only completions count
	m.counted(true)
	m.counted(false)
	m.shipped("sent")
	m.shipped("sent")
	m.shipped("refused")
	m.setPending(7)
	m.droppedDetails(3)
	got := scrape(t, m)
	for _, c := range []struct {
		family, label string
		want          float64
	}{
		{"apisnoop_proxy_requests_total", "2xx", 3}, {"apisnoop_proxy_requests_total", "4xx", 1},
		{"apisnoop_proxy_requests_total", "5xx", 1}, {"apisnoop_proxy_requests_total", "other", 1},
		{"apisnoop_proxy_body_bytes_total", "in", 60}, {"apisnoop_proxy_body_bytes_total", "out", 600},
		{"apisnoop_proxy_watch_events_total", "", 15}, {"apisnoop_record_unknown_requests_total", "", 1},
		{"apisnoop_ship_batches_total", "sent", 2}, {"apisnoop_ship_batches_total", "refused", 1},
		{"apisnoop_ship_pending_requests", "", 7}, {"apisnoop_ship_dropped_details_total", "", 3},
	} {
		if v := value(got, c.family, c.label); v != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.family, c.label, v, c.want)
		}
	}
	h := got["apisnoop_proxy_request_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 6 || h.GetSampleSum() < 0.0209 || h.GetSampleSum() > 0.0211 {
		t.Errorf("histogram count %d sum %v, want 6 and 0.021", h.GetSampleCount(), h.GetSampleSum())
	}
	// Buckets 0.5 ms, 2 ms, 8 ms, ...: 1 ms and 2 ms fall in the second,
	// 3 to 6 ms in the third.
	wantBuckets := map[float64]uint64{0.0005: 0, 0.002: 2, 0.008: 6, 131.072: 6}
	for _, b := range h.GetBucket() {
		if want, ok := wantBuckets[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if len(h.GetBucket()) != 11 { // ten bounds and +Inf
		t.Errorf("%d buckets, want 11", len(h.GetBucket()))
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if v := value(got, name, ""); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
}

func TestEscapeLabelValue(t *testing.T) {
	for in, want := range map[string]string{"2xx": "2xx", `a"b`: `a\"b`, `a\b`: `a\\b`, "a\nb": `a\nb`, "": ""} {
		if got := escapeLabelValue(in); got != want {
			t.Errorf("escapeLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}
