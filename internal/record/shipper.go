package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// Headers of a delta batch sent to the collector. The body is the delta,
// coverage.Encode'd.
const (
	HeaderSource  = "X-Apisnoop-Source"
	HeaderSeq     = "X-Apisnoop-Seq"
	HeaderRelease = "X-Apisnoop-Release"
	// BatchContentType is the media type of a batch body.
	BatchContentType = "application/vnd.apisnoop.delta+zstd"
)

// ShipperConfig says where and how often deltas go.
type ShipperConfig struct {
	// URL is the collector's intake endpoint; batches are POSTed to it.
	URL string
	// Client sends the batches; it carries the collector's trust.
	Client *http.Client
	// Source names this sidecar uniquely (its pod UID); with Seq it lets the
	// collector drop a batch it already has, so retries never double count.
	Source  string
	Release string
	// TokenFile is a projected service account token, read before each send
	// because the kubelet rotates it. Empty sends no token.
	TokenFile string
	// Interval between sends; zero means 5 seconds.
	Interval time.Duration
	// MaxBackoff caps the wait after failed sends; zero means one minute.
	MaxBackoff time.Duration
}

// ShipperStats says what the shipper did.
type ShipperStats struct {
	Sent            int64 `json:"sent"`
	Failures        int64 `json:"failures"`
	PendingRequests int64 `json:"pendingRequests"`
	// DroppedDetails counts requests whose client or unknown shape was not
	// kept while the collector was away; they are in every total.
	DroppedDetails int64  `json:"droppedDetails"`
	LastError      string `json:"lastError,omitempty"`
}

// Shipper sends the recorder's deltas to the collector.
//
// While the collector is away, new deltas are merged into one buffered
// delta. A delta's size is bounded by the release's operations and by
// coverage.MaxClients and coverage.MaxUnknownPaths, not by the number of
// requests, so the buffer holds every count in bounded memory for as long as
// the collector is away; only per-client and unknown-shape detail beyond
// those bounds is dropped, and counted.
type Shipper struct {
	cfg      ShipperConfig
	recorder *Recorder
	metrics  *Metrics

	mu       sync.Mutex
	buffered coverage.Delta
	inFlight *coverage.Delta // sent with seq, unchanged until accepted
	seq      uint64
	stats    ShipperStats
}

// NewShipper returns a shipper of the recorder's deltas.
func NewShipper(cfg ShipperConfig, recorder *Recorder, metrics *Metrics) (*Shipper, error) {
	if cfg.URL == "" {
		return nil, errors.New("create shipper: collector URL is empty")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Minute
	}
	return &Shipper{cfg: cfg, recorder: recorder, metrics: metrics}, nil
}

// Run ships until ctx ends, then tries one last time to send what is left.
func (s *Shipper) Run(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		wait := s.cfg.Interval
		if backoff > 0 {
			wait = backoff
		}
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Ship(final)
			_ = s.Ship(final) // the in-flight batch, then the rest
			cancel()
			return
		case <-time.After(wait):
		}
		if err := s.Ship(ctx); err != nil {
			backoff = nextBackoff(backoff, s.cfg.Interval, s.cfg.MaxBackoff)
			continue
		}
		backoff = 0
	}
}

// nextBackoff doubles the wait, with jitter so sidecars restarted together
// do not retry together.
func nextBackoff(current, min, max time.Duration) time.Duration {
	next := current * 2
	if next < min {
		next = min
	}
	if next > max {
		next = max
	}
	return next/2 + rand.N(next/2+1)
}

// Ship takes what the recorder has and sends one batch: the in-flight one
// if the last send failed, else everything buffered.
func (s *Shipper) Ship(ctx context.Context) error {
	s.mu.Lock()
	taken := s.recorder.Take()
	overflowBefore := s.buffered.Overflow
	s.buffered.Merge(taken)
	dropped := s.buffered.Overflow - overflowBefore
	s.stats.DroppedDetails += dropped
	s.metrics.droppedDetails(dropped)
	if s.inFlight == nil && !s.buffered.Empty() {
		d := s.buffered
		s.inFlight = &d
		s.buffered = coverage.Delta{}
		s.seq++
	}
	batch, seq := s.inFlight, s.seq
	s.updatePendingLocked()
	s.mu.Unlock()
	if batch == nil {
		return nil
	}

	err := s.send(ctx, batch, seq)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.stats.Failures++
		s.stats.LastError = err.Error()
		s.metrics.shipped("error")
		return err
	}
	s.inFlight = nil
	s.stats.Sent++
	s.stats.LastError = ""
	s.metrics.shipped("sent")
	s.updatePendingLocked()
	return nil
}

func (s *Shipper) updatePendingLocked() {
	s.stats.PendingRequests = s.buffered.Requests
	if s.inFlight != nil {
		s.stats.PendingRequests += s.inFlight.Requests
	}
	s.metrics.setPending(s.stats.PendingRequests)
}

func (s *Shipper) send(ctx context.Context, d *coverage.Delta, seq uint64) error {
	body, err := coverage.Encode(d)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("create batch request: %w", err)
	}
	req.Header.Set("Content-Type", BatchContentType)
	req.Header.Set(HeaderSource, s.cfg.Source)
	req.Header.Set(HeaderSeq, strconv.FormatUint(seq, 10))
	req.Header.Set(HeaderRelease, s.cfg.Release)
	if s.cfg.TokenFile != "" {
		token, err := os.ReadFile(s.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("read collector token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("send batch %d: %w", seq, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("send batch %d: collector answered %s: %s", seq, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Stats says what the shipper did so far.
func (s *Shipper) Stats() ShipperStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
