package record

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

func newTestRecorder(t testing.TB) *Recorder {
	t.Helper()
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	return NewRecorder(match.New(cat), NewMetrics())
}

func TestRecorderCountsLongRunningRequestsOnce(t *testing.T) {
	rec := newTestRecorder(t)
	rec.Observe(&Event{ID: 1, Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces/a/pods", Status: 200})
	rec.Observe(&Event{ID: 2, Stage: StageResponseStarted, Method: "GET", Path: "/api/v1/namespaces/a/pods", RawQuery: "watch=true", Status: 200})
	rec.Observe(&Event{ID: 2, Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces/a/pods", RawQuery: "watch=true", Status: 200})
	rec.Observe(&Event{ID: 3, Stage: StageResponseComplete, Method: "GET", Path: "/apis/example.com/v1/widgets", Status: 404,
		UserAgent: "widget-ctl/1", Client: Identity{Pod: "p", Namespace: "n", ServiceAccount: "sa"}})

	d := rec.Take()
	if d.Requests != 3 || d.UnknownRequests != 1 || d.FailedRequests != 1 {
		t.Fatalf("delta %+v, want 3 requests, 1 unknown, 1 failed", d)
	}
	pods := d.Operations["listCoreV1NamespacedPod"]
	if pods == nil || pods.ByVerb["list"] != 1 || pods.ByVerb["watch"] != 1 {
		t.Errorf("listCoreV1NamespacedPod = %+v", pods)
	}
	if c := d.Clients[coverage.Client{Pod: "p", Namespace: "n", ServiceAccount: "sa", UserAgent: "widget-ctl/1"}]; c == nil || c.Unknown != 1 {
		t.Errorf("client of the unknown request not kept: %v", d.Clients)
	}
	if again := rec.Take(); !again.Empty() {
		t.Errorf("second Take not empty: %+v", again)
	}
	if total := rec.Total(); total.Requests != 3 {
		t.Errorf("total %d, want 3", total.Requests)
	}
}

// testCollector is a collector intake that can be switched off; it reads
// batches as the real collector does and drops those it already has.
type testCollector struct {
	down atomic.Bool
	mu   sync.Mutex
	last map[string]uint64 // the last Seq accepted per Source
	got  coverage.Delta
}

func (c *testCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.down.Load() {
		http.Error(w, "collector is away", http.StatusServiceUnavailable)
		return
	}
	b, err := intake.ReadRequest(r, 0)
	if err != nil {
		http.Error(w, err.Error(), err.(*intake.Error).Status)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]uint64{}
	}
	if b.Seq > c.last[b.Source] {
		c.last[b.Source] = b.Seq
		c.got.Merge(b.Delta)
	}
}

func (c *testCollector) requests() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got.Requests
}

func TestShipperKeepsCountsWhileCollectorIsAway(t *testing.T) {
	rec := newTestRecorder(t)
	collector := &testCollector{}
	srv := httptest.NewServer(collector)
	defer srv.Close()
	shipper, err := NewShipper(ShipperConfig{URL: srv.URL, Source: "pod-uid", Release: "1.37"}, rec, rec.metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	record := func(n int) {
		for i := 0; i < n; i++ {
			rec.Observe(&Event{ID: uint64(i), Stage: StageResponseComplete, Method: "GET",
				Path: "/api/v1/namespaces/a/pods/p" + strconv.Itoa(i), Status: 200})
		}
	}

	record(100)
	if err := shipper.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	collector.down.Store(true)
	for round := 0; round < 5; round++ {
		record(1000)
		if err := shipper.Ship(ctx); err == nil {
			t.Fatal("Ship succeeded while the collector was away")
		}
	}
	if st := shipper.Stats(); st.PendingRequests != 5000 || st.Failures != 5 {
		t.Errorf("while away: %+v, want 5000 pending after 5 failures", st)
	}
	collector.down.Store(false)
	record(10)
	// The in-flight batch first, then what was buffered meanwhile.
	for i := 0; i < 2; i++ {
		if err := shipper.Ship(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := collector.requests(); got != 5110 {
		t.Errorf("collector has %d requests, want all 5110", got)
	}
	if st := shipper.Stats(); st.PendingRequests != 0 || st.DroppedDetails != 0 {
		t.Errorf("after recovery: %+v", st)
	}
}

func TestShipperCountsDroppedDetails(t *testing.T) {
	rec := newTestRecorder(t)
	collector := &testCollector{}
	collector.down.Store(true)
	srv := httptest.NewServer(collector)
	defer srv.Close()
	shipper, _ := NewShipper(ShipperConfig{URL: srv.URL, Source: "s", Release: "1.37"}, rec, rec.metrics)
	// More distinct unknown shapes than a delta keeps, over several sends.
	n := coverage.MaxUnknownPaths + 250
	for i := 0; i < n; i++ {
		rec.Observe(&Event{ID: uint64(i), Stage: StageResponseComplete, Method: "GET", Path: fmt.Sprintf("/apis/x.example/v1/r%d", i), Status: 200})
		if i%1000 == 0 {
			_ = shipper.Ship(context.Background())
		}
	}
	_ = shipper.Ship(context.Background())
	collector.down.Store(false)
	for i := 0; i < 3; i++ {
		if err := shipper.Ship(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	st := shipper.Stats()
	if collector.requests() != int64(n) {
		t.Errorf("collector has %d requests, want %d: totals are never dropped", collector.requests(), n)
	}
	// The collector's own delta has the same bounds, so it may drop more.
	if st.DroppedDetails == 0 || collector.got.Overflow < st.DroppedDetails {
		t.Errorf("dropped details %d, collector overflow %d; want non-zero and reported", st.DroppedDetails, collector.got.Overflow)
	}
}

func TestShipperSurvivesCollectorRestart(t *testing.T) {
	rec := newTestRecorder(t)
	collector := &testCollector{}
	first := httptest.NewServer(collector)
	addr := first.Listener.Addr().String()
	shipper, _ := NewShipper(ShipperConfig{URL: first.URL, Source: "restart", Release: "1.37"}, rec, nil)
	observe := func(n int) {
		for i := 0; i < n; i++ {
			rec.Observe(&Event{ID: uint64(i), Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces", Status: 200})
		}
	}
	observe(10)
	if err := shipper.Ship(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close() // the collector process goes away: connections are refused
	observe(20)
	if err := shipper.Ship(context.Background()); err == nil {
		t.Fatal("Ship succeeded with the collector stopped")
	}
	observe(30)
	if err := shipper.Ship(context.Background()); err == nil {
		t.Fatal("Ship succeeded with the collector stopped")
	}

	// The collector comes back on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	second := httptest.NewUnstartedServer(collector)
	second.Listener.Close()
	second.Listener = ln
	second.Start()
	defer second.Close()
	for i := 0; i < 2; i++ {
		if err := shipper.Ship(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := collector.requests(); got != 60 {
		t.Errorf("collector has %d requests, want 60", got)
	}
}
