package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
)

func TestStreamsClassifiesRequests(t *testing.T) {
	for path, want := range map[string]bool{
		"/api/v1/namespaces/a/configmaps":                  false,
		"/api/v1/namespaces/a/configmaps/c":                false,
		"/apis/apps/v1/deployments?limit=500":              false,
		"/api/v1/namespaces/a/pods/p/status":               false,
		"/api/v1/namespaces/a/pods/p/log":                  true,
		"/api/v1/namespaces/a/pods/p/log?follow=true":      true,
		"/api/v1/namespaces/a/pods/p/exec?command=sh":      true,
		"/api/v1/namespaces/a/pods/p/attach":               true,
		"/api/v1/namespaces/a/pods/p/portforward":          true,
		"/api/v1/namespaces/a/services/s:80/proxy/metrics": true,
		"/api/v1/nodes/n/proxy/stats/summary":              true,
		"/api/v1/proxy/namespaces/a/services/s/":           true,
		"/apis/example.com/v1/namespaces/a/widgets/w/log":  true, // any resource's log subresource
		"/api":                     false,
		"/openapi/v3/apis/apps/v1": false,
		"/version":                 false,
		"/api/v1/namespaces/a/configmaps?watch=true":             false, // a watch: long-running, see begin
		"/apis/coordination.k8s.io/v1/namespaces/a/leases/lease": false,
	} {
		u := proxytest.MustURL(t, path)
		info, _ := match.NewRequestInfo(http.MethodGet, u.Path, u.RawQuery)
		if got := streams(info); got != want {
			t.Errorf("streams(%s) = %v, want %v", path, got, want)
		}
	}
}

// countingResponseWriter counts what the proxy hands the server: each Write
// becomes at least one TLS record and system call, each Flush one more.
type countingResponseWriter struct {
	header  http.Header
	status  int
	body    bytes.Buffer
	writes  int
	flushes int
}

func (w *countingResponseWriter) Header() http.Header { return w.header }
func (w *countingResponseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *countingResponseWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.writes++
	return w.body.Write(p)
}

func (w *countingResponseWriter) Flush() { w.flushes++ }

// piecewiseList answers like the API server encodes a list: item by item,
// flushed, with no Content-Length.
func piecewiseList(pieces int) (http.Handler, []byte) {
	var want bytes.Buffer
	item := func(i int) string {
		return fmt.Sprintf(`{"metadata":{"name":"cm-%03d"},"data":{"key":"%0900d"}},`, i, i)
	}
	for i := range pieces {
		want.WriteString(item(i))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := range pieces {
			_, _ = io.WriteString(w, item(i))
			http.NewResponseController(w).Flush()
		}
	}), want.Bytes()
}

// TestAnswersCoalescedStreamsNot: a list the upstream sends in 100 flushed
// pieces of about 1 KiB reaches the client whole in a few large writes and
// no flush; the same answer on a log path, which may be followed, is passed
// on write by write, each flushed.
func TestAnswersCoalescedStreamsNot(t *testing.T) {
	const pieces = 100
	handler, want := piecewiseList(pieces)
	upstream, roots := proxytest.NewUpstream(t, handler)
	events := proxytest.NewEventLog()
	p, err := New(Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: upstreamTransport(roots), Observer: events})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path      string
		coalesced bool
	}{
		{"/api/v1/namespaces/a/configmaps", true},
		{"/api/v1/namespaces/a/pods/p/log?follow=true", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			w := &countingResponseWriter{header: http.Header{}}
			p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if w.status != http.StatusOK || !bytes.Equal(w.body.Bytes(), want) {
				t.Fatalf("status %d, %d bytes, want %d identical bytes", w.status, w.body.Len(), len(want))
			}
			maxWrites := (len(want) + coalesceSize - 1) / coalesceSize
			switch {
			case tc.coalesced && (w.writes > maxWrites || w.flushes != 0):
				t.Errorf("%d writes and %d flushes for %d bytes, want at most %d writes and no flush", w.writes, w.flushes, len(want), maxWrites)
			case !tc.coalesced && w.flushes < w.writes:
				t.Errorf("a stream was held back: %d writes, %d flushes", w.writes, w.flushes)
			}
			u := proxytest.MustURL(t, tc.path)
			ev := events.WaitFor(t, "complete", proxytest.CompleteFor(http.MethodGet, u.Path))
			if ev.BytesOut != int64(len(want)) {
				t.Errorf("BytesOut = %d, want %d", ev.BytesOut, len(want))
			}
		})
	}
}

// TestFollowedLogStreams: a followed log is no watch, yet its lines must
// reach the client as the kubelet sends them, through both protocols.
func TestFollowedLogStreams(t *testing.T) { onEachPath(t, testFollowedLogStreams) }

func testFollowedLogStreams(t *testing.T, start starter) {
	const chunks = 4
	next := make(chan struct{})
	upstream, roots := proxytest.NewUpstream(t, proxytest.ChunkedStream(chunks, next))
	px := proxyTo(t, start, upstream, roots, proxytest.NewEventLog())
	for _, client := range []*http.Client{px.client, px.h1} {
		resp, err := client.Get(px.url.String() + "/api/v1/namespaces/a/pods/p/log?follow=true")
		if err != nil {
			t.Fatal(err)
		}
		proxytest.ReadChunks(t, resp.Body, chunks, next)
		resp.Body.Close()
	}
}
