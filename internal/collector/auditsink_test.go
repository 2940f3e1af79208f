package collector

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The refusals that come before a batch's token is reviewed: their status,
// their Retry-After, and a metav1.Status body the API server's webhook
// client reads. (test/auditsink drives the whole sink from a real API
// server.)
func TestAuditSinkRefusesBeforeReading(t *testing.T) {
	notLeader := make(chan struct{})
	for _, tc := range []struct {
		name       string
		sink       *AuditSink
		method     string
		length     int64
		busy       int64 // bytes already in flight
		want       int
		retryAfter bool
	}{
		{name: "GET", sink: &AuditSink{}, method: http.MethodGet, want: http.StatusMethodNotAllowed},
		{name: "not the leader", sink: &AuditSink{Elected: notLeader}, method: http.MethodPost, length: 100, want: http.StatusServiceUnavailable, retryAfter: true},
		{name: "larger than a batch may be", sink: &AuditSink{MaxBytes: 1000}, method: http.MethodPost, length: 1001, want: http.StatusRequestEntityTooLarge},
		{name: "too much in flight", sink: &AuditSink{MaxBytes: 1000, MaxBytesInFlight: 1500}, method: http.MethodPost, length: 600, busy: 1000, want: http.StatusTooManyRequests, retryAfter: true},
		{name: "unknown length, budget taken", sink: &AuditSink{MaxBytes: 1000, MaxBytesInFlight: 1500}, method: http.MethodPost, length: -1, busy: 600, want: http.StatusTooManyRequests, retryAfter: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sink.init()
			if tc.busy > 0 {
				release, ok := tc.sink.take(tc.busy)
				if !ok {
					t.Fatal("could not take the busy bytes")
				}
				defer release()
			}
			req := httptest.NewRequest(tc.method, AuditPath, strings.NewReader("{}"))
			req.ContentLength = tc.length
			rec := httptest.NewRecorder()
			tc.sink.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if got := rec.Header().Get("Retry-After") != ""; got != tc.retryAfter {
				t.Errorf("Retry-After set: %t, want %t", got, tc.retryAfter)
			}
			if tc.method != http.MethodPost {
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" || int(st.Code) != tc.want {
				t.Errorf("body %q is not a Status with code %d (%v)", rec.Body, tc.want, err)
			}
			if tc.retryAfter && (st.Details == nil || st.Details.RetryAfterSeconds == 0) {
				t.Errorf("a %d Status must say when to retry: %+v", tc.want, st.Details)
			}
		})
	}
}

// The bytes in flight are given back, so that refusals do not last.
func TestAuditSinkTakeReleases(t *testing.T) {
	s := &AuditSink{MaxBytes: 100, MaxBytesInFlight: 150}
	s.init()
	first, ok := s.take(100)
	if !ok {
		t.Fatal("the first batch must fit")
	}
	if _, ok := s.take(100); ok {
		t.Fatal("a second batch must not fit while the first is in flight")
	}
	first()
	second, ok := s.take(100)
	if !ok {
		t.Fatal("room must be back once the first batch is done")
	}
	second()
}
