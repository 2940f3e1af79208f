package record

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/intake"
)

func TestShipperNumbersBatchesAndRetriesWithTheSameSeq(t *testing.T) {
	var (
		mu     sync.Mutex
		seqs   []uint64
		tokens []string
		fail   = map[uint64]bool{2: true} // batch 2 fails once
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tokens = append(tokens, intake.Token(r))
		b, err := intake.ReadRequest(r, 0)
		if err != nil {
			t.Errorf("collector: %v", err)
			http.Error(w, err.Error(), err.(*intake.Error).Status)
			return
		}
		seqs = append(seqs, b.Seq)
		if b.Source != "pod-uid" || b.Release != "1.37" || b.Delta.Requests != 1 {
			t.Errorf("batch %+v, want source pod-uid, release 1.37 and one request", b)
		}
		if fail[b.Seq] {
			delete(fail, b.Seq)
			http.Error(w, "not now", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	rec := newTestRecorder(t)
	shipper, err := NewShipper(ShipperConfig{URL: srv.URL, Source: "pod-uid", Release: "1.37", TokenFile: tokenFile, FirstSeq: 1}, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		rec.Observe(&Event{ID: uint64(i), Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces", Status: 200})
		err := shipper.Ship(ctx)
		if i == 1 {
			if err == nil {
				t.Fatal("Ship succeeded while the collector answered 503")
			}
			// Nothing new was recorded: the retry is batch 2 as it was.
			if err := shipper.Ship(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []uint64{1, 2, 2, 3}; !slices.Equal(seqs, want) {
		t.Errorf("sequence numbers %v, want %v", seqs, want)
	}
	for _, tok := range tokens {
		if tok != "the-token" {
			t.Errorf("token %q, want the file's content", tok)
		}
	}
	if err := shipper.Ship(ctx); err != nil || len(seqs) != 4 {
		t.Errorf("Ship with nothing recorded: err %v, %d requests; want nothing sent", err, len(seqs))
	}
}

func TestNewShipperRefusesUnsendableConfig(t *testing.T) {
	good := ShipperConfig{URL: "https://collector.example:8443" + intake.Path, Source: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Release: "1.37"}
	if _, err := NewShipper(good, nil, nil); err != nil {
		t.Fatalf("NewShipper(%+v): %v", good, err)
	}
	for name, change := range map[string]func(*ShipperConfig){
		"no URL":        func(c *ShipperConfig) { c.URL = "" },
		"malformed URL": func(c *ShipperConfig) { c.URL = "https://collector:port\x7f/" },
		"no source":     func(c *ShipperConfig) { c.Source = "" },
		"bad source":    func(c *ShipperConfig) { c.Source = "pod/uid" },
		"no release":    func(c *ShipperConfig) { c.Release = "" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			change(&cfg)
			if _, err := NewShipper(cfg, nil, nil); err == nil {
				t.Errorf("NewShipper(%+v) succeeded", cfg)
			}
		})
	}
}

func TestShipperStartsAboveAnEarlierRun(t *testing.T) {
	cfg := ShipperConfig{URL: "https://collector.example" + intake.Path, Source: "pod-uid", Release: "1.37"}
	first, err := NewShipper(cfg, newTestRecorder(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	restarted, err := NewShipper(cfg, newTestRecorder(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	// An earlier run sent a thousand batches.
	if restarted.seq <= first.seq+1000 {
		t.Errorf("a restarted shipper starts at %d, not above the earlier run's %d + its batches", restarted.seq, first.seq)
	}
}

func TestShipperDropsABatchTheCollectorRefusesForGood(t *testing.T) {
	var seqs []uint64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := intake.ReadRequest(r, 0)
		if err != nil {
			t.Errorf("collector: %v", err)
			return
		}
		seqs = append(seqs, b.Seq)
		if b.Seq == 1 {
			http.Error(w, "another release", http.StatusConflict)
		}
	}))
	defer srv.Close()
	rec := newTestRecorder(t)
	shipper, err := NewShipper(ShipperConfig{URL: srv.URL, Source: "pod-uid", Release: "1.37", FirstSeq: 1}, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec.Observe(&Event{ID: 1, Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces", Status: 200})
	if err := shipper.Ship(ctx); err == nil {
		t.Fatal("a refused batch reported as sent")
	}
	rec.Observe(&Event{ID: 2, Stage: StageResponseComplete, Method: "GET", Path: "/api/v1/namespaces", Status: 200})
	if err := shipper.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint64{1, 2}) || shipper.Stats().RefusedRequests != 1 {
		t.Errorf("sequences %v, refused %d: want the refused batch dropped and counted, the next sent", seqs, shipper.Stats().RefusedRequests)
	}
}
