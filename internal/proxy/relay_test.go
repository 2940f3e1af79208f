package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// TestRelaySpeaksTheClientsProtocolUpstream checks that the relay answers
// each client with the protocol its upstream chose for the client's offer,
// so both sides of a connection speak the same one.
func TestRelaySpeaksTheClientsProtocolUpstream(t *testing.T) {
	protoSeen := make(chan int, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protoSeen <- r.ProtoMajor
		_, _ = io.WriteString(w, `{"kind":"PodList"}`)
	})
	h2Upstream, h2Roots := proxytest.NewUpstream(t, handler)
	h1Upstream := httptest.NewTLSServer(handler) // offers HTTP/1.1 only
	t.Cleanup(h1Upstream.Close)

	for _, tc := range []struct {
		name     string
		upstream *httptest.Server
		roots    *x509.CertPool
		http2    bool
		want     int
	}{
		{"HTTP/2 client, HTTP/2 upstream", h2Upstream, h2Roots, true, 2},
		{"HTTP/1.1 client, HTTP/2 upstream", h2Upstream, h2Roots, false, 1},
		{"HTTP/2 client, HTTP/1.1 upstream", h1Upstream, upstreamPool(h1Upstream), true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := proxytest.NewEventLog()
			px := startRelay(t, Config{Upstream: proxytest.MustURL(t, tc.upstream.URL), Transport: upstreamTransport(tc.roots), Observer: events})
			client := px.h1
			if tc.http2 {
				client = px.client
			}
			resp, err := client.Get(px.url.String() + "/api/v1/pods?limit=5")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != tc.want || string(body) != `{"kind":"PodList"}` {
				t.Fatalf("client got HTTP/%d %q, want HTTP/%d and the upstream's body", resp.ProtoMajor, body, tc.want)
			}
			if got := <-protoSeen; got != tc.want {
				t.Errorf("upstream saw HTTP/%d, the client HTTP/%d", got, resp.ProtoMajor)
			}
			ev := events.WaitFor(t, "the list", proxytest.CompleteFor(http.MethodGet, "/api/v1/pods"))
			if ev.Status != http.StatusOK || ev.RawQuery != "limit=5" || ev.BytesOut != int64(len(body)) || ev.UserAgent != "Go-http-client/"+map[int]string{1: "1.1", 2: "2.0"}[tc.want] {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// rawUpstream is a TLS server that records every byte it receives and
// answers each connection with reply once it has read want bytes.
type rawUpstream struct {
	addr  string
	roots *x509.CertPool

	mu       sync.Mutex
	received []byte
}

func startRawUpstream(t *testing.T, want int, reply []byte) *rawUpstream {
	t.Helper()
	ca := proxytest.NewCA(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Serving(t)}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &rawUpstream{addr: ln.Addr().String(), roots: ca.Pool}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, want)
				n, _ := io.ReadFull(conn, buf)
				u.mu.Lock()
				u.received = append(u.received, buf[:n]...)
				u.mu.Unlock()
				_, _ = conn.Write(reply)
			}()
		}
	}()
	return u
}

func (u *rawUpstream) got() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return bytes.Clone(u.received)
}

// relayExchangeRaw sends request over TLS through the relay and returns all
// the client received until the upstream closed.
func relayExchangeRaw(t *testing.T, px *runningProxy, request []byte) []byte {
	t.Helper()
	conn, err := tls.Dial("tcp", px.url.Host, &tls.Config{RootCAs: px.ca.Pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(proxytest.WaitLimit))
	if _, err := conn.Write(request); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	return got
}

// TestRelayChangesNoByte sends requests with what a reverse proxy would
// normalise (header case and order, repeated fields, hop-by-hop headers, an
// absolute request target, a chunked body with extensions and trailers)
// and checks the upstream receives them, and the client the answer, byte
// for byte.
func TestRelayChangesNoByte(t *testing.T) {
	request := []byte("POST https://kubernetes.default.svc/api/v1/namespaces/default/configmaps?fieldManager=kubectl HTTP/1.1\r\n" +
		"host: kubernetes.default.svc\r\n" +
		"AUTHORIZATION: Bearer raw-token\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\n" +
		"Connection: keep-alive, X-Hop\r\n" +
		"X-Hop: dropped-by-reverse-proxies\r\n" +
		"Accept: application/json\r\n" +
		"Accept: application/yaml\r\n" +
		"Content-Type: application/json\r\n" +
		"Transfer-Encoding: chunked\r\n" +
		"User-Agent: raw/1.0\r\n" +
		"\r\n" +
		"a;ext=1\r\n{\"kind\":\"C\r\n" +
		"10\r\nonfigMap\",\"x\":1}\r\n" +
		"0\r\nX-Trailer: t\r\n\r\n")
	reply := []byte("HTTP/1.1 201 Created\r\n" +
		"content-type: application/json\r\n" +
		"X-Odd:   spaced  \r\n" +
		"Content-Length: 17\r\n" +
		"\r\n" +
		`{"kind":"Status"}`)
	upstream := startRawUpstream(t, len(request), reply)
	events := proxytest.NewEventLog()
	px := startRelay(t, Config{
		Upstream:  proxytest.MustURL(t, "https://"+upstream.addr),
		Transport: upstreamTransport(upstream.roots),
		Observer:  events, KeepBodies: true,
	})

	got := relayExchangeRaw(t, px, request)
	if !bytes.Equal(got, reply) {
		t.Errorf("client received\n%q\nwant the upstream's bytes\n%q", got, reply)
	}
	if sent := upstream.got(); !bytes.Equal(sent, request) {
		t.Errorf("upstream received\n%q\nwant the client's bytes\n%q", sent, request)
	}
	ev := events.WaitFor(t, "the post", proxytest.CompleteFor(http.MethodPost, "/api/v1/namespaces/default/configmaps"))
	if ev.Status != http.StatusCreated || ev.RawQuery != "fieldManager=kubectl" || ev.UserAgent != "raw/1.0" ||
		string(ev.Body) != `{"kind":"ConfigMap","x":1}` || ev.BytesIn != 26 || ev.BytesOut != 17 || ev.ContentType != "application/json" {
		t.Errorf("event %+v (body %q)", ev, ev.Body)
	}
	data := mustJSON(t, ev)
	for _, secret := range []string{"raw-token", "10.0.0.1", "dropped-by", "X-Trailer"} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("event carries %q from a header: %s", secret, data)
		}
	}
}

// TestRelayKeepsRelayingWhatItCannotRead sends bytes that are no HTTP: the
// upstream still gets them unchanged, and the connection is counted as
// unreadable.
func TestRelayKeepsRelayingWhatItCannotRead(t *testing.T) {
	request := []byte("this is not HTTP at all\r\n\r\n\x00\x01\x02")
	reply := []byte("nor is this\n")
	upstream := startRawUpstream(t, len(request), reply)
	metrics := record.NewMetrics()
	addr, ca, cancel, served := startRelayServing(t, Config{Upstream: proxytest.MustURL(t, "https://"+upstream.addr),
		Transport: upstreamTransport(upstream.roots), Observer: proxytest.NewEventLog(), ErrorLog: discardLog()}, metrics)
	px := running(t, addr, ca, cancel, served)

	if got := relayExchangeRaw(t, px, request); !bytes.Equal(got, reply) {
		t.Errorf("client received %q, want %q", got, reply)
	}
	if sent := upstream.got(); !bytes.Equal(sent, request) {
		t.Errorf("upstream received %q, want %q", sent, request)
	}
	var out strings.Builder
	_, _ = metrics.WriteTo(&out)
	for _, want := range []string{`apisnoop_proxy_connections_total{served="relayed"} 1`, `apisnoop_proxy_connections_total{served="unreadable"} 1`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, out.String())
		}
	}
}

// TestRelayFallsBackWhileUpstreamIsDown starts the relay before its
// upstream: the first connection is answered by the reverse proxy with a
// 502 Status, and once the upstream listens, new connections are relayed.
func TestRelayFallsBackWhileUpstreamIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "up")
	}))
	upstream.EnableHTTP2 = true
	roots := x509.NewCertPool()

	events := proxytest.NewEventLog()
	px := startRelay(t, Config{Upstream: proxytest.MustURL(t, "https://"+addr), Transport: upstreamTransport(roots), Observer: events, ErrorLog: discardLog()})
	resp, err := px.client.Get(px.url.String() + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("with the upstream down: %d, want 502", resp.StatusCode)
	}
	px.client.CloseIdleConnections()

	relisten, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	upstream.Listener = relisten
	upstream.StartTLS()
	t.Cleanup(upstream.Close)
	roots.AddCert(upstream.Certificate())

	resp, err = px.client.Get(px.url.String() + "/version")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "up" {
		t.Fatalf("with the upstream back: %d %q", resp.StatusCode, body)
	}
	events.WaitFor(t, "the relayed request", func(ev record.Event) bool {
		return ev.Stage == record.StageResponseComplete && ev.Status == http.StatusOK
	})
}

// TestRelayShutdownLetsRequestsFinish shuts the relay down while a request
// is in flight: it is answered, and Serve returns once it was.
func TestRelayShutdownLetsRequestsFinish(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	addr, ca, cancel, served := startRelayServing(t, Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: upstreamTransport(roots)}, nil)
	client := &http.Client{Transport: clientTransport(ca.Pool, false)}
	answered := make(chan string, 1)
	go func() {
		resp, err := client.Get("https://" + addr + "/api/v1/pods")
		if err != nil {
			answered <- err.Error()
			return
		}
		body, _ := io.ReadAll(bufio.NewReader(resp.Body))
		resp.Body.Close()
		answered <- string(body)
	}()
	<-arrived
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if got := <-answered; got != "finished" {
		t.Errorf("in-flight request got %q", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestRelayEarlyAnswerReachesUploadingClient has the API server answer a
// large upload before reading it, and close: the client must get the
// answer, not a reset caused by closing its socket with bytes unread.
func TestRelayEarlyAnswerReachesUploadingClient(t *testing.T) {
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
	}))
	px := startRelay(t, Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: upstreamTransport(roots)})
	upload := make([]byte, 16<<20)
	for i := range 5 {
		resp, err := px.h1.Post(px.url.String()+"/api/v1/namespaces/default/configmaps", "application/json", bytes.NewReader(upload))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("upload %d: %d, want 413", i, resp.StatusCode)
		}
	}
}

// TestRelayHangingUpstreamFallsBack has an upstream that accepts
// connections and never answers: the client still gets the reverse
// proxy's 502 Status, within client-go's TLS handshake timeout.
func TestRelayHangingUpstreamFallsBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	upstreamURL := proxytest.MustURL(t, "https://"+ln.Addr().String())
	px := startRelay(t, Config{Upstream: upstreamURL, Transport: upstreamTransport(x509.NewCertPool()), ErrorLog: discardLog(),
		// The reverse proxy's own transport must give up too.
		UpgradeTransport: &http.Transport{TLSHandshakeTimeout: time.Second}})
	client := &http.Client{Transport: clientTransport(px.ca.Pool, false)}
	client.Transport.(*http.Transport).TLSHandshakeTimeout = 10 * time.Second // client-go's
	resp, err := client.Get(px.url.String() + "/version")
	if err != nil {
		t.Fatalf("the client gave up: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("%d, want 502", resp.StatusCode)
	}
}

// TestRelayShutdownAbortsHandshakes connects and never says hello: shutdown
// must not wait for the handshake's timeout.
func TestRelayShutdownAbortsHandshakes(t *testing.T) {
	upstream, roots := proxytest.NewUpstream(t, http.NotFoundHandler())
	addr, _, cancel, served := startRelayServing(t, Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: upstreamTransport(roots)}, nil)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond) // accepted, handshake under way
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(handshakeTimeout / 2):
		t.Fatal("shutdown waited for a handshake that never came")
	}
}

// TestRelayPassesResets has the upstream reset the connection in the middle
// of a body delimited by the close: the client must see a failure, not a
// clean end that would make the partial body look complete.
func TestRelayPassesResets(t *testing.T) {
	ca := proxytest.NewCA(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Serving(t)}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(conn)
		if _, err := http.ReadRequest(br); err != nil {
			conn.Close()
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"partial\":")
		time.Sleep(50 * time.Millisecond)
		_ = conn.(*tls.Conn).NetConn().(*net.TCPConn).SetLinger(0)
		_ = conn.(*tls.Conn).NetConn().Close() // a reset, no close_notify
	}()
	px := startRelay(t, Config{Upstream: proxytest.MustURL(t, "https://"+ln.Addr().String()), Transport: upstreamTransport(ca.Pool)})
	resp, err := px.h1.Get(px.url.String() + "/api/v1/pods")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("read %q and a clean end, want an error", body)
	}
}

func TestUpstreamAddress(t *testing.T) {
	for raw, want := range map[string]string{
		"https://10.96.0.1":           "10.96.0.1:443",
		"https://10.96.0.1:6443":      "10.96.0.1:6443",
		"https://[fd00::1]":           "[fd00::1]:443",
		"https://api.example.test/":   "api.example.test:443",
		"https://api.example.test:44": "api.example.test:44",
	} {
		if got := upstreamAddress(proxytest.MustURL(t, raw)); got != want {
			t.Errorf("%s: %s, want %s", raw, got, want)
		}
	}
}

// TestRelaySlowReaderGetsTheWholeAnswer has the API server send a large
// answer and close while the client reads slowly: the client must get
// every byte and a clean end, however long it takes to read them.
func TestRelaySlowReaderGetsTheWholeAnswer(t *testing.T) {
	answer := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	upstream, roots := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write(answer)
	}))
	px := startRelay(t, Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: upstreamTransport(roots)})
	resp, err := px.h1.Get(px.url.String() + "/api/v1/configmaps")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	buf := make([]byte, 4<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
		time.Sleep(5 * time.Millisecond) // in all far longer than the 500 ms the relay lingers
	}
	if !bytes.Equal(got.Bytes(), answer) {
		t.Errorf("got %d bytes, want the %d the API server sent", got.Len(), len(answer))
	}
}

// TestServerPathIsNetHTTPs sends request targets to a real net/http server
// and checks serverPath gives the path it matched, or the target as sent
// when the server refused it.
func TestServerPathIsNetHTTPs(t *testing.T) {
	seen := make(chan string, 1)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.URL.Path
	}))
	t.Cleanup(server.Close)
	for _, target := range []string{
		"/api/v1/namespaces/default/secrets",
		"/api/v1/namespaces/default/%73ecrets",
		"/api/v1/namespaces/default/secrets%2Fs",
		"/api/v1/namespaces/a+b/pods",
		"https://kubernetes.default.svc/api/v1/namespaces/default/secrets?limit=1",
		"http:/api/v1/namespaces/default/secrets",
		"//api/v1/secrets",
		"/api/v1/namespaces/%zz/pods",
	} {
		conn, err := net.Dial("tcp", server.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		want := strings.SplitN(target, "?", 2)[0]
		if resp.StatusCode == http.StatusOK {
			want = <-seen
		}
		if got := serverPath(http.MethodGet, strings.SplitN(target, "?", 2)[0]); got != want {
			t.Errorf("%s: serverPath %q, net/http matched %q (status %d)", target, got, want, resp.StatusCode)
		}
	}
	if got := serverPath(http.MethodConnect, "10.0.0.1:10250"); got != "10.0.0.1:10250" {
		t.Errorf("CONNECT target became %q", got)
	}
}
