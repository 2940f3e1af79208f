package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// proxyTo starts a recording proxy in front of ts.
func proxyTo(t testing.TB, start starter, ts *httptest.Server, roots *x509.CertPool, obs record.Observer) *runningProxy {
	t.Helper()
	return start(t, Config{
		Upstream:   proxytest.MustURL(t, ts.URL),
		Transport:  upstreamTransport(roots),
		Observer:   obs,
		KeepBodies: true,
	})
}

func TestStreamDeliveredWriteByWrite(t *testing.T) { onEachPath(t, testStreamDeliveredWriteByWrite) }

func testStreamDeliveredWriteByWrite(t *testing.T, start starter) {
	const chunks = 5
	next := make(chan struct{})
	upstream, roots := proxytest.NewUpstream(t, proxytest.ChunkedStream(chunks, next))
	events := proxytest.NewEventLog()
	px := proxyTo(t, start, upstream, roots, events)

	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  int
	}{{"HTTP/2", px.client, 2}, {"HTTP/1.1", px.h1, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.Get(px.url.String() + "/api/v1/namespaces/default/configmaps?watch=true")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != tc.proto {
				t.Fatalf("client spoke %s, want HTTP/%d", resp.Proto, tc.proto)
			}
			proxytest.ReadChunks(t, resp.Body, chunks, next)
			ev := events.WaitFor(t, "complete watch", func(ev record.Event) bool {
				return ev.Stage == record.StageResponseComplete && ev.WatchEvents == chunks
			})
			if ev.Status != http.StatusOK {
				t.Errorf("status %d", ev.Status)
			}
		})
	}
	started := 0
	for _, ev := range events.All() {
		if ev.Stage == record.StageResponseStarted {
			started++
		}
	}
	if started != 2 {
		t.Errorf("%d ResponseStarted events, want 2 (one per watch)", started)
	}
}

func TestBinaryBodiesByteIdentical(t *testing.T) { onEachPath(t, testBinaryBodiesByteIdentical) }

func testBinaryBodiesByteIdentical(t *testing.T, start starter) {
	requestBody := make([]byte, 1<<20+7)
	responseBody := make([]byte, 3<<20+3)
	_, _ = rand.Read(requestBody)
	_, _ = rand.Read(responseBody)
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sum := sha256.Sum256(got)
		w.Header().Set("X-Request-Sha256", fmt.Sprintf("%x", sum))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(responseBody)
	}))
	events := proxytest.NewEventLog()
	px := proxyTo(t, start, upstream, roots, events)

	for _, client := range []*http.Client{px.client, px.h1} {
		resp, err := client.Post(px.url.String()+"/blob", "application/octet-stream", bytes.NewReader(requestBody))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%x", sha256.Sum256(requestBody)); resp.Header.Get("X-Request-Sha256") != want {
			t.Errorf("upstream received a different request body")
		}
		if !bytes.Equal(got, responseBody) {
			t.Errorf("response body differs: %d bytes, want %d", len(got), len(responseBody))
		}
	}
	// One completion per client.
	events.WaitFor(t, "for both posts", func(record.Event) bool { return len(events.All()) >= 2 })
	if n := len(events.All()); n != 2 {
		t.Errorf("%d events, want one per post", n)
	}
	for _, ev := range events.All() {
		if ev.BytesIn != int64(len(requestBody)) || ev.BytesOut != int64(len(responseBody)) {
			t.Errorf("event counted in=%d out=%d, want %d/%d", ev.BytesIn, ev.BytesOut, len(requestBody), len(responseBody))
		}
		if len(ev.Body) != defaultMaxBodyBytes || !ev.BodyTruncated || !bytes.Equal(ev.Body, requestBody[:defaultMaxBodyBytes]) {
			t.Errorf("kept body: %d bytes truncated=%v, want the first %d bytes", len(ev.Body), ev.BodyTruncated, defaultMaxBodyBytes)
		}
		if ev.ContentType != "application/octet-stream" {
			t.Errorf("kept body's Content-Type %q, want the request's", ev.ContentType)
		}
	}
}

// TestHeadersReachUpstreamUnchanged checks credentials pass through and the
// proxy adds no header of its own.
func TestHeadersReachUpstreamUnchanged(t *testing.T) {
	onEachPath(t, testHeadersReachUpstreamUnchanged)
}

func testHeadersReachUpstreamUnchanged(t *testing.T, start starter) {
	seen := make(chan http.Header, 1)
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	px := proxyTo(t, start, upstream, roots, proxytest.NewEventLog())

	sent := http.Header{
		"Authorization":    {"Bearer header-test-token"},
		"Cookie":           {"session=abc"},
		"User-Agent":       {"kubectl/v1.37.2 (linux/amd64)"},
		"Accept":           {"application/json"},
		"X-Forwarded-For":  {"10.1.2.3"}, // sent by the client: kept as is
		"Impersonate-User": {"jane"},
	}
	for _, client := range []*http.Client{px.client, px.h1} {
		req, _ := http.NewRequest(http.MethodGet, px.url.String()+"/api/v1/pods", nil)
		req.Header = sent.Clone()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := <-seen
		for name, want := range sent {
			if g := got.Values(name); strings.Join(g, ",") != strings.Join(want, ",") {
				t.Errorf("%s reached upstream as %q, want %q", name, g, want)
			}
		}
		for name := range got {
			if _, ok := sent[name]; !ok {
				t.Errorf("upstream saw header %s=%q the client never sent", name, got.Values(name))
			}
		}
	}
}

func TestNoHeaderLeaksIntoEvents(t *testing.T) { onEachPath(t, testNoHeaderLeaksIntoEvents) }

func testNoHeaderLeaksIntoEvents(t *testing.T, start starter) {
	const (
		tokenMarker  = "tok3n-marker-7f1c"
		cookieMarker = "c00kie-marker-2b9d"
		customMarker = "cust0m-marker-91aa"
	)
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Set-Cookie", "reply="+cookieMarker)
		w.Header().Set("X-Reply", customMarker)
		_, _ = io.WriteString(w, `{"kind":"Status"}`)
	}))
	events := proxytest.NewEventLog()
	px := proxyTo(t, start, upstream, roots, events)

	for i, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, px.url.String()+"/api/v1/namespaces/default/configmaps", strings.NewReader(`{"kind":"ConfigMap"}`))
		req.Header.Set("Authorization", "Bearer "+tokenMarker)
		req.Header.Set("Cookie", "session="+cookieMarker)
		req.Header.Set("X-Custom", customMarker)
		req.Header.Set("User-Agent", "leak-test")
		resp, err := px.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		events.WaitFor(t, "request done", func(ev record.Event) bool { return ev.ID == uint64(i+1) })
	}
	for _, ev := range events.All() {
		data := mustJSON(t, ev)
		for _, marker := range []string{tokenMarker, cookieMarker, customMarker} {
			if bytes.Contains(data, []byte(marker)) {
				t.Errorf("event carries header marker %q: %s", marker, data)
			}
		}
		if ev.UserAgent != "leak-test" {
			t.Errorf("user agent %q not recorded", ev.UserAgent)
		}
	}
}

type panickingObserver struct{}

func (panickingObserver) Observe(*record.Event) { panic("observer is broken") }

func TestObserverPanicDoesNotBreakProxying(t *testing.T) {
	onEachPath(t, testObserverPanicDoesNotBreakProxying)
}

func testObserverPanicDoesNotBreakProxying(t *testing.T, start starter) {
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "fine")
	}))
	px := proxyTo(t, start, upstream, roots, panickingObserver{})
	for _, path := range []string{"/api/v1/pods", "/api/v1/pods?watch=1"} {
		resp, err := px.client.Get(px.url.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "fine" {
			t.Errorf("%s: got %d %q through a panicking observer", path, resp.StatusCode, body)
		}
	}
}

func TestUpstreamDownAnswers502Status(t *testing.T) { onEachPath(t, testUpstreamDownAnswers502Status) }

func testUpstreamDownAnswers502Status(t *testing.T, start starter) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	events := proxytest.NewEventLog()
	px := start(t, Config{
		Upstream:  proxytest.MustURL(t, "https://"+deadAddr),
		Transport: upstreamTransport(x509.NewCertPool()),
		Observer:  events,
	})
	resp, err := px.client.Get(px.url.String() + "/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	var status metav1.Status
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		t.Fatalf("decode Status: %v", err)
	}
	if status.Kind != "Status" || status.APIVersion != "v1" || status.Code != http.StatusBadGateway || status.Status != metav1.StatusFailure ||
		status.Reason != metav1.StatusReasonServiceUnavailable || !strings.Contains(status.Message, "reach API server") {
		t.Errorf("unexpected Status %+v", status)
	}
	ev := events.WaitFor(t, "502", proxytest.CompleteFor(http.MethodGet, "/api/v1/namespaces"))
	if ev.Status != http.StatusBadGateway {
		t.Errorf("event status %d", ev.Status)
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	onEachPath(t, testWebSocketUpgradePassesThrough)
}

func testWebSocketUpgradePassesThrough(t *testing.T, start starter) {
	upstream, roots := proxytest.NewUpstream(t, websocket.Handler(func(ws *websocket.Conn) {
		// Speak first, then echo: both directions are exercised.
		_ = websocket.Message.Send(ws, "hello from upstream")
		for {
			var msg []byte
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			_ = websocket.Message.Send(ws, append([]byte("echo:"), msg...))
		}
	}))
	events := proxytest.NewEventLog()
	px := proxyTo(t, start, upstream, roots, events)

	cfg, err := websocket.NewConfig("wss://"+px.url.Host+"/api/v1/namespaces/default/pods/p/exec?command=sh", "https://"+px.url.Host)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TlsConfig = &tls.Config{RootCAs: px.ca.Pool}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("dial websocket through proxy: %v", err)
	}
	var greeting string
	if err := websocket.Message.Receive(ws, &greeting); err != nil || greeting != "hello from upstream" {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	payload := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	if err := websocket.Message.Send(ws, payload); err != nil {
		t.Fatal(err)
	}
	var echo []byte
	if err := websocket.Message.Receive(ws, &echo); err != nil || !bytes.Equal(echo, append([]byte("echo:"), payload...)) {
		t.Fatalf("echo %q, %v", echo, err)
	}
	ws.Close()

	started := events.WaitFor(t, "upgrade started", func(ev record.Event) bool { return ev.Stage == record.StageResponseStarted })
	if !started.Upgraded || started.Status != http.StatusSwitchingProtocols {
		t.Errorf("started event %+v", started)
	}
	done := events.WaitFor(t, "upgrade complete", proxytest.CompleteFor(http.MethodGet, "/api/v1/namespaces/default/pods/p/exec"))
	if !done.Upgraded || done.BytesIn == 0 || done.BytesOut == 0 {
		t.Errorf("complete event %+v", done)
	}
}

func TestSPDYUpgradePassesThrough(t *testing.T) {
	upstream, roots := proxytest.NewUpstream(t, proxytest.SPDYUpstream(t))
	restNormal, restUpgrade, err := resttransport.For(&rest.Config{
		Host:            upstream.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: pemCert(upstream.Certificate())},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		start   starter
		normal  http.RoundTripper
		upgrade http.RoundTripper
	}{
		{"derived from *http.Transport", startProxy, upstreamTransport(roots), nil},
		{"client-go transports", startProxy, restNormal, restUpgrade},
		{"relay", startRelay, upstreamTransport(roots), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := proxytest.NewEventLog()
			px := tc.start(t, Config{
				Upstream:         proxytest.MustURL(t, upstream.URL),
				Transport:        tc.normal,
				UpgradeTransport: tc.upgrade,
				Observer:         events,
			})
			conn, err := tls.Dial("tcp", px.url.Host, &tls.Config{RootCAs: px.ca.Pool, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, "POST /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: "+px.url.Host+
				"\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "SPDY/3.1" {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("got %s %q, want 101 to SPDY/3.1", resp.Status, body)
			}
			proxytest.SPDYEcho(t, conn, br, "\x00\x01binary\xff\n")
			conn.Close()
			done := events.WaitFor(t, "upgrade complete", proxytest.CompleteFor(http.MethodPost, "/api/v1/namespaces/default/pods/p/exec"))
			if !done.Upgraded || done.Status != http.StatusSwitchingProtocols || done.BytesOut == 0 {
				t.Errorf("complete event %+v", done)
			}
		})
	}
}

func TestShutdownEndsWatches(t *testing.T) {
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // a watch that never ends by itself
	}))
	cfg := Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: upstreamTransport(roots)}
	for _, path := range []struct {
		name  string
		serve func(t *testing.T) (string, *proxytest.CA, context.CancelFunc, <-chan error)
	}{
		{"reverse proxy", func(t *testing.T) (string, *proxytest.CA, context.CancelFunc, <-chan error) {
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return startServing(t, p)
		}},
		{"relay", func(t *testing.T) (string, *proxytest.CA, context.CancelFunc, <-chan error) {
			return startRelayServing(t, cfg, nil)
		}},
	} {
		t.Run(path.name, func(t *testing.T) {
			addr, ca, cancel, served := path.serve(t)
			client := &http.Client{Transport: clientTransport(ca.Pool, true)}
			resp, err := client.Get("https://" + addr + "/api/v1/pods?watch=true")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			cancel()
			// Shutdown would wait out its whole grace period if the watch
			// were not ended; Serve returning without error means it was.
			if err := <-served; err != nil {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}
