package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"apisnoop.dev/kube-apisnoop/internal/record"
)

// countingObserver is the cheapest realistic observer: it only counts.
type countingObserver struct{ n atomic.Int64 }

func (o *countingObserver) Observe(*record.Event) { o.n.Add(1) }

// BenchmarkHandler measures the recording proxy's own cost per request: the
// handler called in process against the envtest API server, next to the same
// request sent with the proxy's transport alone. The difference in
// allocations is the proxy's; the throughput comparison through the real
// sidecar binary is test/proxy's BenchmarkSidecarThroughput.
func BenchmarkHandler(b *testing.B) {
	f := envtestServer(b)
	observer := &countingObserver{}
	ns := f.namespace(b, "bench")
	for i := range 100 {
		if _, err := f.clientset.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i), Labels: map[string]string{"bench": "yes"}},
			Data:       map[string]string{"key": "a small value of some forty characters.."},
		}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	paths := map[string]string{
		"get":      "/api/v1/namespaces/" + ns + "/configmaps/cm-042",
		"list-100": "/api/v1/namespaces/" + ns + "/configmaps",
	}
	recorder, err := New(f.proxyConfig(b, Config{Observer: observer}))
	if err != nil {
		b.Fatal(err)
	}
	for _, op := range []string{"get", "list-100"} {
		b.Run(op+"/transport", func(b *testing.B) {
			benchSerial(b, func() {
				req, _ := http.NewRequest(http.MethodGet, f.upstream+paths[op], nil)
				req.Header.Set("Accept", "application/json")
				resp, err := f.normal.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		})
		b.Run(op+"/handler", func(b *testing.B) {
			benchSerial(b, func() {
				req := httptest.NewRequest(http.MethodGet, paths[op], nil)
				req.Header.Set("Accept", "application/json")
				rec := discardWriter{header: http.Header{}}
				recorder.ServeHTTP(&rec, req)
				if rec.status != http.StatusOK {
					b.Fatalf("status %d", rec.status)
				}
			})
		})
	}
}

func benchSerial(b *testing.B, do func()) {
	latencies := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		do()
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, latencies)
}

func reportLatencies(b *testing.B, latencies []time.Duration) {
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	percentile := func(p float64) float64 {
		i := int(p * float64(len(latencies)-1))
		return float64(latencies[i].Microseconds())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(percentile(0.50), "p50-µs")
	b.ReportMetric(percentile(0.99), "p99-µs")
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
