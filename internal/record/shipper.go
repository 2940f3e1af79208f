package record

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/intake"
)

// ShipperConfig says where and how often deltas go.
type ShipperConfig struct {
	// URL is the collector's intake endpoint (intake.Path on the
	// collector); batches are POSTed to it.
	URL string
	// Client sends the batches; it carries the collector's trust.
	Client *http.Client
	// Source names this sidecar uniquely (its pod UID); with the batch's
	// sequence number it lets the collector drop a batch it already has, so
	// retries never double count.
	Source string
	// Release is the Kubernetes release whose operations are recorded.
	Release string
	// TokenFile is a projected service account token, read before each send
	// because the kubelet rotates it. Empty sends no token.
	TokenFile string
	// FirstSeq is the sequence of the first batch; zero means the clock in
	// microseconds. The collector keeps the highest sequence it merged per
	// source and drops batches at or below it, so a restarted sidecar (the
	// same pod, the same source) must go on above its earlier run's: the
	// clock does that without state on disk.
	FirstSeq uint64
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
	DroppedDetails int64 `json:"droppedDetails"`
	// RefusedRequests counts requests in batches the collector refused for
	// good (malformed, too large, matched against another release).
	RefusedRequests int64  `json:"refusedRequests,omitempty"`
	LastError       string `json:"lastError,omitempty"`
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

// NewShipper returns a shipper of the recorder's deltas. It refuses a
// configuration whose batches could never be sent: no URL, a malformed one,
// or a source or release the intake protocol does not accept.
func NewShipper(cfg ShipperConfig, recorder *Recorder, metrics *Metrics) (*Shipper, error) {
	if cfg.URL == "" {
		return nil, errors.New("create shipper: collector URL is empty")
	}
	probe := intake.Batch{Source: cfg.Source, Seq: 1, Release: cfg.Release, Delta: &coverage.Delta{}}
	if _, err := intake.NewRequest(context.Background(), cfg.URL, probe, ""); err != nil {
		return nil, fmt.Errorf("create shipper: %w", err)
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
	if cfg.FirstSeq == 0 {
		cfg.FirstSeq = uint64(time.Now().UnixMicro())
	}
	return &Shipper{cfg: cfg, recorder: recorder, metrics: metrics, seq: cfg.FirstSeq - 1}, nil
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
	var refused *refusedError
	if errors.As(err, &refused) {
		// The collector will never take this batch (malformed, too large,
		// another release): retrying it would stop all shipping for good.
		// Its counts are lost, and counted.
		s.inFlight = nil
		s.stats.Failures++
		s.stats.RefusedRequests += batch.Requests
		s.stats.LastError = err.Error()
		s.metrics.shipped("refused")
		s.updatePendingLocked()
		return err
	}
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

// send sends one batch; seq is FirstSeq for the first batch and grows by
// one for each new one, while a batch sent again keeps its seq.
func (s *Shipper) send(ctx context.Context, d *coverage.Delta, seq uint64) error {
	var token string
	if s.cfg.TokenFile != "" {
		raw, err := os.ReadFile(s.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("read collector token: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	}
	req, err := intake.NewRequest(ctx, s.cfg.URL, intake.Batch{Source: s.cfg.Source, Seq: seq, Release: s.cfg.Release, Delta: d}, token)
	var invalid *intake.Error
	if errors.As(err, &invalid) {
		return &refusedError{err} // the collector would refuse it the same way
	} else if err != nil {
		return err
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("send batch %d: %w", seq, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("send batch %d: collector answered %s: %s", seq, resp.Status, strings.TrimSpace(string(msg)))
		switch resp.StatusCode {
		case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			return &refusedError{err}
		}
		return err // 401 and 403 may pass (a token being rotated, a pod not yet cached), 5xx too
	}
	return nil
}

// refusedError is an answer that sending the batch again cannot change.
type refusedError struct{ error }

func (e *refusedError) Unwrap() error { return e.error }

// Stats says what the shipper did so far.
func (s *Shipper) Stats() ShipperStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
