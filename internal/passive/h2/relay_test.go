package h2

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"apisnoop.dev/kube-apisnoop/internal/passive"
)

// These tests put a real net/http client and server, speaking HTTP/2 in
// cleartext on 127.0.0.1, on either side of a small TCP forwarder that
// hands every chunk it forwards to a scanner first, as the relay does.

type relayedConn struct {
	scanner *Scanner
	rec     *recorder
	segs    []segment
}

type relay struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex // serializes the scanners, as the relay does
	conns []*relayedConn
}

func startRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &relay{t: t, ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go r.serve(c)
		}
	}()
	return r
}

func (r *relay) serve(client net.Conn) {
	defer r.wg.Done()
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		r.t.Errorf("relay: %v", err)
		client.Close()
		return
	}
	rec := &recorder{}
	c := &relayedConn{scanner: New(rec.begin), rec: rec}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()

	var pumps sync.WaitGroup
	pump := func(from, to net.Conn, fromClient bool) {
		defer pumps.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := from.Read(buf)
			if n > 0 {
				r.mu.Lock()
				c.segs = append(c.segs, segment{client: fromClient, b: bytes.Clone(buf[:n])})
				give(c.scanner, fromClient, buf[:n])
				r.mu.Unlock()
				if _, err := to.Write(buf[:n]); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		client.Close()
		server.Close()
	}
	pumps.Add(2)
	go pump(client, server, true)
	go pump(server, client, false)
	pumps.Wait()
	r.mu.Lock()
	rec.note("close")
	c.scanner.Close()
	r.mu.Unlock()
}

// exchanges returns the exchanges of every connection, in the order they
// began on each.
func (r *relay) exchanges() []*exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []*exchange
	for _, c := range r.conns {
		all = append(all, c.rec.exchanges...)
	}
	return all
}

// h2env is a server, the relay in front of it and a client of the relay.
type h2env struct {
	t      *testing.T
	srv    *http.Server
	relay  *relay
	tr     *http.Transport
	client *http.Client
	base   string
}

func cleartextHTTP2() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

func newEnv(t *testing.T, handler http.Handler, serverConf, clientConf *http.HTTP2Config) *h2env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, Protocols: cleartextHTTP2(), HTTP2: serverConf}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	r := startRelay(t, ln.Addr().String())
	tr := &http.Transport{Protocols: cleartextHTTP2(), HTTP2: clientConf}
	return &h2env{t: t, srv: srv, relay: r, tr: tr, client: &http.Client{Transport: tr}, base: "http://" + r.ln.Addr().String()}
}

// finish closes the client's connections, waits for the relay to see them
// end, and checks what every connection's scanner read: no error, every
// exchange ended once, and the same log when the recorded bytes are fed
// again whole, byte by byte and in random splits.
func (e *h2env) finish() []*exchange {
	e.t.Helper()
	// Every request is answered by now; closing the server too ends any
	// connection the client does not count as idle.
	e.tr.CloseIdleConnections()
	e.srv.Close()
	e.relay.ln.Close()
	e.relay.wg.Wait()
	for i, c := range e.relay.conns {
		if err := c.scanner.Err(); err != nil {
			e.t.Errorf("connection %d: Err = %v", i, err)
		}
		c.rec.verify(e.t, fmt.Sprintf("connection %d", i))
		replay, _ := scan(e.t, c.segs, nil, 2)
		if diff := cmp.Diff(c.rec.lines(), replay.lines()); diff != "" {
			e.t.Errorf("connection %d: feeding the recorded bytes again reads differently (-live +again):\n%s", i, diff)
		}
	}
	return e.relay.exchanges()
}

func (e *h2env) do(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	if resp.ProtoMajor != 2 {
		e.t.Fatalf("%s %s: got %s, want HTTP/2", req.Method, req.URL, resp.Proto)
	}
	return resp, body
}

func (e *h2env) newRequest(method, target string, body io.Reader) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	return req
}

// want is what an exchange must have recorded.
type want struct {
	req          passive.Request
	requestBody  []byte
	status       int
	contentType  string
	encoding     string
	responseBody []byte
	complete     bool
}

func checkExchange(t *testing.T, x *exchange, w want) {
	t.Helper()
	if x == nil {
		t.Errorf("no exchange for %s", requestText(w.req))
		return
	}
	if x.req != w.req {
		t.Errorf("request:\n got %s\nwant %s", requestText(x.req), requestText(w.req))
	}
	if !bytes.Equal(x.requestBody, w.requestBody) {
		t.Errorf("%s: request body %s, want %s", x.req.Path, bodyText(x.requestBody), bodyText(w.requestBody))
	}
	wantResp := passive.Response{Status: w.status, ContentType: w.contentType, ContentEncoding: w.encoding}
	if x.response == nil || *x.response != wantResp {
		t.Errorf("%s: response %+v, want %+v", x.req.Path, x.response, wantResp)
	}
	if !bytes.Equal(x.responseBody, w.responseBody) {
		t.Errorf("%s: response body %s, want %s", x.req.Path, bodyText(x.responseBody), bodyText(w.responseBody))
	}
	if x.ends != 1 || x.complete != w.complete {
		t.Errorf("%s: ended %d times, complete %v; want once, %v", x.req.Path, x.ends, x.complete, w.complete)
	}
}

// byQuery indexes exchanges by their query, which the tests make unique.
func byQuery(xs []*exchange) map[string]*exchange {
	m := make(map[string]*exchange)
	for _, x := range xs {
		m[x.req.RawQuery] = x
	}
	return m
}

// frames reads back one side of a recorded connection with the http2
// Framer and counts its frame types, so tests can show they produced the
// traffic they claim to.
func frames(t *testing.T, c *relayedConn, client bool) map[http2.FrameType]int {
	t.Helper()
	counts := make(map[http2.FrameType]int)
	err := eachFrame(c, client, nil, func(f http2.Frame) { counts[f.Header().Type]++ })
	if err != nil {
		t.Fatalf("reading back recorded frames: %v", err)
	}
	return counts
}

func payload(seed string, n int) []byte {
	b := make([]byte, 0, n+32)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%s-%d;", seed, i)
	}
	return b[:n]
}

// TestRealManyGETs sends a hundred GETs, one after another, over one
// connection: the HPACK tables fill up and are referenced.
func TestRealManyGETs(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Audit-Id", r.URL.RawQuery)
		w.Write(payload(r.URL.RawQuery, 100+len(r.URL.RawQuery)*10))
	}), nil, nil)
	var wants []want
	for i := range 100 {
		path := fmt.Sprintf("/api/v1/namespaces/ns-%d/pods", i%5)
		query := fmt.Sprintf("limit=%d&labelSelector=app%%3Dweb", i)
		req := e.newRequest("GET", path+"?"+query, nil)
		req.Header.Set("User-Agent", kubectl)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer token-%d", i%3))
		req.Header.Set("Accept", "application/json, */*")
		resp, body := e.do(req)
		wants = append(wants, want{
			req:    passive.Request{Method: "GET", Path: path, RawQuery: query, UserAgent: kubectl},
			status: resp.StatusCode, contentType: "application/json", responseBody: body, complete: true,
		})
	}
	xs := e.finish()
	if len(e.relay.conns) != 1 {
		t.Errorf("%d connections, want 1", len(e.relay.conns))
	}
	if len(xs) != len(wants) {
		t.Fatalf("%d exchanges, want %d", len(xs), len(wants))
	}
	for i, w := range wants {
		checkExchange(t, xs[i], w)
	}
}

// TestRealConcurrentStreams runs requests from many goroutines at once on
// one connection; a barrier holds the first wave's responses until all its
// streams are open together.
func TestRealConcurrentStreams(t *testing.T) {
	const workers, perWorker = 16, 12
	var arrived sync.WaitGroup
	arrived.Add(workers)
	barrier := make(chan struct{})
	go func() { arrived.Wait(); close(barrier) }()
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: %v", err)
		}
		if r.URL.Query().Get("wave") == "first" {
			arrived.Done()
			<-barrier
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("size"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Request-Sha", fmt.Sprintf("%x", sha256.Sum256(reqBody)))
		w.Write(payload(r.URL.RawQuery, n))
	}), nil, nil)
	// One request first, so that everything after shares its connection.
	e.do(e.newRequest("GET", "/warm-up?id=warm-up", nil))

	type sent struct {
		query       string
		method      string
		requestBody []byte
		body        []byte
	}
	results := make(chan sent, workers*perWorker)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				size := (g*perWorker + i) * 997 % (70 << 10)
				query := fmt.Sprintf("id=%d-%d&size=%d", g, i, size)
				if i == 0 {
					query += "&wave=first"
				}
				method, reqBody := "GET", []byte(nil)
				if i%2 == 1 {
					method, reqBody = "POST", payload(query, size/2)
				}
				req, err := http.NewRequest(method, e.base+"/objects?"+query, bytes.NewReader(reqBody))
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := e.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				results <- sent{query: query, method: method, requestBody: reqBody, body: body}
			}
		}()
	}
	wg.Wait()
	close(results)
	xs := byQuery(e.finish())
	if len(e.relay.conns) != 1 {
		t.Errorf("%d connections, want 1", len(e.relay.conns))
	}
	n := 0
	for r := range results {
		n++
		ua := "Go-http-client/2.0"
		checkExchange(t, xs[r.query], want{
			req:         passive.Request{Method: r.method, Path: "/objects", RawQuery: r.query, UserAgent: ua},
			requestBody: r.requestBody, status: 200, contentType: "application/octet-stream",
			responseBody: r.body, complete: true,
		})
	}
	if n != workers*perWorker || len(xs) != n+1 {
		t.Errorf("%d requests answered, %d exchanges; want %d and one more", n, len(xs), workers*perWorker)
	}
}

// TestRealRequestBodies sends bodies of several sizes and kinds, and one
// without a body at all (its HEADERS end the stream).
func TestRealRequestBodies(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: %v", err)
		}
		sum := sha256.Sum256(b)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, hex.EncodeToString(sum[:]))
	}), nil, nil)
	cases := []struct {
		method, query, contentType string
		body                       []byte
		unknownLength              bool
	}{
		{"POST", "json", "application/json", []byte(`{"kind":"ConfigMap","apiVersion":"v1","data":{"k":"v"}}`), false},
		{"PUT", "big", "application/vnd.kubernetes.protobuf", payload("big", 1<<20+123), false},
		{"PATCH", "streamed", "application/apply-patch+yaml", payload("streamed", 300<<10), true},
		{"DELETE", "empty", "", nil, false},
	}
	for _, c := range cases {
		var body io.Reader = bytes.NewReader(c.body)
		if c.unknownLength {
			body = io.MultiReader(body)
		}
		if c.body == nil {
			body = nil
		}
		req := e.newRequest(c.method, "/apis/v1/things?"+c.query, body)
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		req.Header.Set("User-Agent", "client/"+c.query)
		_, resp := e.do(req)
		sum := sha256.Sum256(c.body)
		if string(resp) != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: the server read a different body", c.query)
		}
	}
	xs := byQuery(e.finish())
	for _, c := range cases {
		sum := sha256.Sum256(c.body)
		checkExchange(t, xs[c.query], want{
			req:         passive.Request{Method: c.method, Path: "/apis/v1/things", RawQuery: c.query, UserAgent: "client/" + c.query, ContentType: c.contentType},
			requestBody: c.body, status: 200, contentType: "text/plain",
			responseBody: []byte(hex.EncodeToString(sum[:])), complete: true,
		})
	}
}

// TestRealLargeResponses reads responses of several MiB over small flow
// control windows (many WINDOW_UPDATEs) and over large frames.
func TestRealLargeResponses(t *testing.T) {
	for _, c := range []struct {
		name string
		conf *http.HTTP2Config
	}{
		{"small windows", &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 16 << 10}},
		{"large frames", &http.HTTP2Config{MaxReadFrameSize: 1 << 24}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := payload("list", 6<<20)
			e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				for rest := body; len(rest) > 0; {
					n := min(len(rest), 700<<10)
					w.Write(rest[:n])
					rest = rest[n:]
				}
			}), nil, c.conf)
			_, got := e.do(e.newRequest("GET", "/api/v1/pods?list=1", nil))
			if !bytes.Equal(got, body) {
				t.Fatal("the client read a different body")
			}
			xs := e.finish()
			if len(xs) != 1 {
				t.Fatalf("%d exchanges, want 1", len(xs))
			}
			checkExchange(t, xs[0], want{
				req:    passive.Request{Method: "GET", Path: "/api/v1/pods", RawQuery: "list=1", UserAgent: "Go-http-client/2.0"},
				status: 200, contentType: "application/json", responseBody: body, complete: true,
			})
			server, client := frames(t, e.relay.conns[0], false), frames(t, e.relay.conns[0], true)
			t.Logf("server sent %d DATA frames; client sent %d WINDOW_UPDATE frames", server[http2.FrameData], client[http2.FrameWindowUpdate])
			if c.name == "small windows" && client[http2.FrameWindowUpdate] < 100 {
				t.Errorf("only %d WINDOW_UPDATE frames: the windows were not small", client[http2.FrameWindowUpdate])
			}
			if c.name == "large frames" {
				largest := uint32(0)
				err := eachFrame(e.relay.conns[0], false, nil, func(f http2.Frame) {
					if h := f.Header(); h.Type == http2.FrameData {
						largest = max(largest, h.Length)
					}
				})
				if err != nil {
					t.Fatalf("reading back recorded frames: %v", err)
				}
				// 16384 is the frame size every peer must accept; only
				// the client's larger setting allows more.
				if largest <= 16384 {
					t.Errorf("the largest DATA frame is %d bytes: the frames were not large", largest)
				}
			}
		})
	}
}

// TestRealTrailers sends trailers both ways.
func TestRealTrailers(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Trailer.Get("X-Request-Checksum") != "req-sum" {
			t.Errorf("server: request trailer %q", r.Trailer.Get("X-Request-Checksum"))
		}
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(b)
		w.Header().Set("X-Checksum", "resp-sum")
	}), nil, nil)
	req := e.newRequest("POST", "/trailers?x=1", io.MultiReader(strings.NewReader("body with trailers")))
	req.Trailer = http.Header{"X-Request-Checksum": {"req-sum"}}
	req.Header.Set("Content-Type", "text/plain")
	resp, body := e.do(req)
	if resp.Trailer.Get("X-Checksum") != "resp-sum" {
		t.Errorf("client: response trailer %q", resp.Trailer.Get("X-Checksum"))
	}
	xs := e.finish()
	checkExchange(t, xs[0], want{
		req:         passive.Request{Method: "POST", Path: "/trailers", RawQuery: "x=1", UserAgent: "Go-http-client/2.0", ContentType: "text/plain"},
		requestBody: []byte("body with trailers"), status: 200, contentType: "text/plain", responseBody: body, complete: true,
	})
	// HEADERS, trailers: two header blocks each way.
	if n := frames(t, e.relay.conns[0], true)[http2.FrameHeaders]; n != 2 {
		t.Errorf("client sent %d HEADERS, want 2", n)
	}
	if n := frames(t, e.relay.conns[0], false)[http2.FrameHeaders]; n != 2 {
		t.Errorf("server sent %d HEADERS, want 2", n)
	}
}

// TestRealStreamingResponse checks that a flushed part of a response is
// reported before the response ends: the scanner holds nothing back.
func TestRealStreamingResponse(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;stream=watch")
		io.WriteString(w, `{"type":"ADDED"}`+"\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, `{"type":"DELETED"}`+"\n")
	}), nil, nil)
	resp, err := e.client.Do(e.newRequest("GET", "/api/v1/pods?watch=1", nil))
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len(`{"type":"ADDED"}`+"\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	// The client read it, so the scanner saw it before the relay forwarded.
	xs := e.relay.exchanges()
	e.relay.mu.Lock()
	if len(xs) != 1 || xs[0].response == nil || string(xs[0].responseBody) != string(first) || xs[0].ends != 0 {
		t.Errorf("mid-stream: %d exchanges, first %+v", len(xs), xs)
	}
	e.relay.mu.Unlock()
	close(release)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	xs = e.finish()
	checkExchange(t, xs[0], want{
		req:    passive.Request{Method: "GET", Path: "/api/v1/pods", RawQuery: "watch=1", UserAgent: "Go-http-client/2.0"},
		status: 200, contentType: "application/json;stream=watch", responseBody: append(first, rest...), complete: true,
	})
}

// TestRealHEAD checks a response without a body.
func TestRealHEAD(t *testing.T) {
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1234")
		if r.Method != "HEAD" {
			w.Write(make([]byte, 1234))
		}
	}), nil, nil)
	resp, body := e.do(e.newRequest("HEAD", "/healthz?verbose", nil))
	if resp.ContentLength != 1234 || len(body) != 0 {
		t.Errorf("client: length %d, body %d bytes", resp.ContentLength, len(body))
	}
	xs := e.finish()
	checkExchange(t, xs[0], want{
		req:    passive.Request{Method: "HEAD", Path: "/healthz", RawQuery: "verbose", UserAgent: "Go-http-client/2.0"},
		status: 200, contentType: "application/json", complete: true,
	})
}

// TestRealCancel cancels a request while its response streams: the client
// resets the stream and the exchange ends incomplete; the connection
// carries on.
func TestRealCancel(t *testing.T) {
	reset := make(chan struct{})
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/after" {
			io.WriteString(w, "after")
			return
		}
		io.WriteString(w, "first part")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(reset)
	}), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req := e.newRequest("GET", "/logs?follow=true", nil).WithContext(ctx)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, len("first part"))
	if _, err := io.ReadFull(resp.Body, part); err != nil {
		t.Fatal(err)
	}
	cancel()
	// The server saw the RST_STREAM, so the scanner did before it.
	<-reset
	resp.Body.Close()
	e.relay.mu.Lock()
	xs := e.relay.conns[0].rec.exchanges
	if len(xs) != 1 || xs[0].ends != 1 || xs[0].complete {
		t.Errorf("after the reset: %+v", xs)
	}
	e.relay.mu.Unlock()
	_, after := e.do(e.newRequest("GET", "/after?again", nil))
	xs = e.finish()
	if len(xs) != 2 {
		t.Fatalf("%d exchanges, want 2", len(xs))
	}
	checkExchange(t, xs[0], want{
		req:    passive.Request{Method: "GET", Path: "/logs", RawQuery: "follow=true", UserAgent: "Go-http-client/2.0"},
		status: 200, contentType: "text/plain; charset=utf-8", responseBody: part, complete: false,
	})
	checkExchange(t, xs[1], want{
		req:    passive.Request{Method: "GET", Path: "/after", RawQuery: "again", UserAgent: "Go-http-client/2.0"},
		status: 200, contentType: "text/plain; charset=utf-8", responseBody: after, complete: true,
	})
	if n := frames(t, e.relay.conns[0], true)[http2.FrameRSTStream]; n != 1 {
		t.Errorf("client sent %d RST_STREAM, want 1", n)
	}
}

// TestRealHeaderTableSizes sets the HPACK table sizes both sides announce
// and use, and sends many header fields that fill and churn the tables.
func TestRealHeaderTableSizes(t *testing.T) {
	for _, c := range []struct {
		name           string
		client, server *http.HTTP2Config
		// table is the size the client announces; large says whether the
		// server's encoder goes beyond the default 4096.
		table uint32
		large bool
	}{
		{
			name:   "small",
			client: &http.HTTP2Config{MaxDecoderHeaderTableSize: 100},
			server: &http.HTTP2Config{MaxDecoderHeaderTableSize: 300},
			table:  100,
		},
		{
			name:   "large",
			client: &http.HTTP2Config{MaxDecoderHeaderTableSize: 64 << 10, MaxEncoderHeaderTableSize: 64 << 10},
			server: &http.HTTP2Config{MaxDecoderHeaderTableSize: 64 << 10, MaxEncoderHeaderTableSize: 64 << 10},
			table:  64 << 10,
			large:  true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for i := range 30 {
					w.Header().Set(fmt.Sprintf("X-Response-%d", i), r.Header.Get(fmt.Sprintf("X-Field-%d", i)))
				}
				w.Header().Set("Content-Type", "application/x-"+r.URL.Query().Get("n"))
				io.WriteString(w, r.URL.RawQuery)
			}), c.server, c.client)
			for i := range 40 {
				req := e.newRequest("GET", fmt.Sprintf("/fields?n=%d", i), nil)
				for j := range 30 {
					req.Header.Set(fmt.Sprintf("X-Field-%d", j), strings.Repeat(strconv.Itoa((i/4+j)%7), 150))
				}
				req.Header.Set("User-Agent", fmt.Sprintf("agent/%d", i%3))
				e.do(req)
			}
			xs := e.finish()
			if len(xs) != 40 {
				t.Fatalf("%d exchanges, want 40", len(xs))
			}
			for i, x := range xs {
				query := fmt.Sprintf("n=%d", i)
				checkExchange(t, x, want{
					req:    passive.Request{Method: "GET", Path: "/fields", RawQuery: query, UserAgent: fmt.Sprintf("agent/%d", i%3)},
					status: 200, contentType: fmt.Sprintf("application/x-%d", i), responseBody: []byte(query), complete: true,
				})
			}
			conn := e.relay.conns[0]
			if got := announcedTableSize(t, conn, true); got != c.table {
				t.Errorf("client announced a table of %d, want %d", got, c.table)
			}
			// With the default bound the server's header blocks would not
			// decode: the scanner must have followed the client's SETTINGS.
			err := decodeServerBlocks(conn, initialHeaderTableSize)
			if c.large && err == nil {
				t.Error("the server's blocks decode with a 4096-byte bound: the test does not exercise large tables")
			}
			if err := decodeServerBlocks(conn, c.table); err != nil {
				t.Errorf("the server's blocks do not decode with the announced bound: %v", err)
			}
		})
	}
}

func announcedTableSize(t *testing.T, c *relayedConn, client bool) uint32 {
	t.Helper()
	size := uint32(initialHeaderTableSize)
	err := eachFrame(c, client, nil, func(f http2.Frame) {
		if s, ok := f.(*http2.SettingsFrame); ok {
			if v, ok := s.Value(http2.SettingHeaderTableSize); ok {
				size = v
			}
		}
	})
	if err != nil {
		t.Fatalf("reading back recorded frames: %v", err)
	}
	return size
}

// decodeServerBlocks decodes the server's header blocks with the given
// bound on table size updates.
func decodeServerBlocks(c *relayedConn, bound uint32) error {
	return eachFrame(c, false, hpack.NewDecoder(bound, nil), func(http2.Frame) {})
}

// eachFrame reads back one side of a recorded connection with the http2
// Framer, decoding header blocks with dec if it is not nil.
func eachFrame(c *relayedConn, client bool, dec *hpack.Decoder, fn func(http2.Frame)) error {
	var stream []byte
	for _, seg := range c.segs {
		if seg.client == client {
			stream = append(stream, seg.b...)
		}
	}
	if client {
		stream = bytes.TrimPrefix(stream, []byte(http2.ClientPreface))
	}
	fr := http2.NewFramer(nil, bytes.NewReader(stream))
	fr.SetMaxReadFrameSize(1<<24 - 1)
	fr.ReadMetaHeaders = dec
	fr.MaxHeaderListSize = 1 << 30
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(f)
	}
}

// TestRealFields checks what a request and response report: user agent,
// content types, escaped paths, queries with '?' in them, status codes
// and a content encoding the client undoes (the body is reported as sent).
func TestRealFields(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(payload("compressed", 10<<10))
	zw.Close()
	e := newEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gzip":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz.Bytes())
		case "/missing":
			http.NotFound(w, r)
		default:
			// Read before answering: a response that ends the stream first
			// would end the exchange before the body is seen.
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
			w.WriteHeader(http.StatusCreated)
		}
	}), nil, nil)
	type call struct {
		method, target, ua, contentType string
		want                            want
	}
	calls := []call{
		{"POST", "/api/v1/namespaces/a%2Fb/configmaps?dryRun=All&x=1?y=2", "kubectl/v1.37.2", "application/json",
			want{req: passive.Request{Method: "POST", Path: "/api/v1/namespaces/a%2Fb/configmaps", RawQuery: "dryRun=All&x=1?y=2", UserAgent: "kubectl/v1.37.2", ContentType: "application/json"},
				requestBody: []byte("{}"), status: 201, contentType: "application/vnd.kubernetes.protobuf", complete: true}},
		{"GET", "/gzip?", "curl/8.0", "",
			want{req: passive.Request{Method: "GET", Path: "/gzip", UserAgent: "curl/8.0"},
				status: 200, contentType: "application/json", encoding: "gzip", responseBody: gz.Bytes(), complete: true}},
		{"GET", "/missing", "", "",
			want{req: passive.Request{Method: "GET", Path: "/missing", UserAgent: "Go-http-client/2.0"},
				status: 404, contentType: "text/plain; charset=utf-8", responseBody: []byte("404 page not found\n"), complete: true}},
	}
	for _, c := range calls {
		var body io.Reader
		if c.want.requestBody != nil {
			body = bytes.NewReader(c.want.requestBody)
		}
		req := e.newRequest(c.method, c.target, body)
		if c.ua != "" {
			req.Header.Set("User-Agent", c.ua)
		}
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		req.Header.Set("Authorization", "Bearer do-not-keep")
		e.do(req)
	}
	xs := e.finish()
	if len(xs) != len(calls) {
		t.Fatalf("%d exchanges, want %d", len(xs), len(calls))
	}
	for i, c := range calls {
		checkExchange(t, xs[i], c.want)
	}
}
