package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/passive"
	"apisnoop.dev/kube-apisnoop/internal/passive/h1"
	"apisnoop.dev/kube-apisnoop/internal/passive/h2"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// RelayConfig is the sidecar's forwarding path: what ServeRelay needs.
type RelayConfig struct {
	// Proxy records the relayed exchanges (its observer, identity and body
	// settings) and serves, as a reverse proxy, the connections the relay
	// cannot take: those accepted while the upstream could not be reached,
	// which it answers with a 502 Status when it still cannot.
	Proxy *Proxy
	// Upstream is the real API server; only its host and port are used.
	Upstream *url.URL
	// UpstreamTLS verifies the API server (the cluster CA). Its NextProtos
	// are replaced by what each client offers.
	UpstreamTLS *tls.Config
	// Serving presents the proxy's certificate to clients; its NextProtos
	// are replaced by the protocol the upstream chose.
	Serving *tls.Config
	// Metrics counts connections by how they were served; nil counts none.
	Metrics *record.Metrics
}

// relayProtocols are the protocols the relay can read; a client offering
// others gets HTTP/1.1, as a client offering none does.
var relayProtocols = []string{"h2", "http/1.1"}

const (
	// handshakeTimeout bounds a client's TLS handshake, in which the relay
	// also dials the upstream.
	handshakeTimeout = 30 * time.Second
	// upstreamDialTimeout bounds reaching the API server.
	upstreamDialTimeout = 10 * time.Second
	// relayBufferSize holds a TLS record's plaintext: tls.Conn.Read returns
	// at most one record, so a larger buffer would never fill.
	relayBufferSize = 16 << 10
	// drainPoll is how often a draining relay looks for connections that
	// became idle.
	drainPoll = 50 * time.Millisecond
)

// ServeRelay serves clients on ln as a byte relay until ctx is done: each
// client connection gets a TLS connection of its own to the upstream,
// dialled during the client's handshake with the protocols the client
// offers, and the client is answered with the protocol the upstream chose,
// so both sides speak the same HTTP/2 or HTTP/1.1. Bytes are then copied
// both ways as they come, unchanged, and read on the way by a passive
// scanner, which reports each exchange to the proxy's observer.
//
// Compared with the reverse proxy (Proxy as an http.Handler), nothing is
// parsed into requests, re-encoded or re-framed: the API server sees the
// client's own bytes, header for header and frame for frame, and the proxy
// spends about half the CPU per request. When the upstream cannot be
// reached during a handshake, the connection goes to the reverse proxy
// instead, which answers each request with a 502 Status while the API
// server stays away: clients see why.
//
// On shutdown it stops accepting, closes connections with no request in
// flight (watches and upgraded streams count as none: clients re-establish
// them) and gives the others shutdownGrace to finish.
func ServeRelay(ctx context.Context, ln net.Listener, cfg RelayConfig) error {
	if cfg.Proxy == nil || cfg.Upstream == nil || cfg.Upstream.Host == "" || cfg.UpstreamTLS == nil || cfg.Serving == nil {
		return errors.New("serve relay: the proxy, upstream, upstream TLS and serving TLS are required")
	}
	if !CanRelay(cfg.Upstream) {
		return fmt.Errorf("serve relay: %s: the relay dials an https upstream and forwards request paths unchanged, so it cannot reach an API server behind a path prefix; serve the reverse proxy instead", cfg.Upstream.Redacted())
	}
	r := &relay{cfg: cfg, conns: map[*relayConn]struct{}{}}
	r.fallback = newConnListener(ln.Addr())
	fallback := NewServer(cfg.Proxy, nil)
	fallbackDone := make(chan error, 1)
	go func() { fallbackDone <- fallback.HTTP.Serve(r.fallback) }()

	accepted := make(chan error, 1)
	go func() { accepted <- r.accept(ln) }()
	var err error
	select {
	case err = <-accepted:
	case <-ctx.Done():
		_ = ln.Close()
		<-accepted
	}
	r.drain()
	if shutdownErr := fallback.Shutdown(); err == nil {
		err = shutdownErr
	}
	<-fallbackDone
	return err
}

// CanRelay reports whether ServeRelay can forward to upstream: an https URL
// with no path, since the relay changes no byte of a request's path.
func CanRelay(upstream *url.URL) bool {
	return upstream.Scheme == "https" && (upstream.Path == "" || upstream.Path == "/")
}

type relay struct {
	cfg      RelayConfig
	fallback *connListener

	mu       sync.Mutex
	conns    map[*relayConn]struct{}
	draining bool
	wg       sync.WaitGroup
}

func (r *relay) accept(ln net.Listener) error {
	for {
		raw, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return fmt.Errorf("serve relay: %w", err)
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(raw)
		}()
	}
}

// drain closes connections as they become idle, and every one after
// shutdownGrace, then waits for their goroutines.
func (r *relay) drain() {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	deadline := time.Now().Add(shutdownGrace)
	for {
		r.mu.Lock()
		left := 0
		for c := range r.conns {
			if c.busy.Load() == 0 || !time.Now().Before(deadline) {
				c.close()
				continue
			}
			left++
		}
		r.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(drainPoll)
	}
	r.wg.Wait()
}

// serve handshakes with the client, dialling the upstream meanwhile, and
// relays; a connection whose upstream could not be dialled goes to the
// reverse proxy.
func (r *relay) serve(raw net.Conn) {
	var upstream *tls.Conn
	var dialErr error
	client := tls.Server(raw, &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		serving := r.cfg.Serving.Clone()
		offered := offeredProtocols(hello.SupportedProtos)
		upstream, dialErr = r.dial(hello.Context(), offered)
		if dialErr != nil {
			serving.NextProtos = relayProtocols
			return serving, nil
		}
		serving.NextProtos = nil
		if chosen := upstream.ConnectionState().NegotiatedProtocol; chosen != "" {
			serving.NextProtos = []string{chosen}
		}
		return serving, nil
	}})
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	err := client.Handshake()
	_ = raw.SetDeadline(time.Time{})
	if err != nil {
		_ = client.Close()
		if upstream != nil {
			_ = upstream.Close()
		}
		return
	}
	if upstream == nil {
		r.cfg.Proxy.logf("apisnoop proxy: reach API server for a new connection: %v", dialErr)
		r.count("fallback")
		if !r.fallback.hand(client) {
			_ = client.Close()
		}
		return
	}
	c := &relayConn{client: client, upstream: upstream}
	if !r.track(c) {
		c.close()
		return
	}
	defer r.untrack(c)
	r.count("relayed")
	c.run(r)
}

// dial opens a TLS connection to the upstream offering protocols.
func (r *relay) dial(ctx context.Context, protocols []string) (*tls.Conn, error) {
	cfg := r.cfg.UpstreamTLS.Clone()
	cfg.NextProtos = protocols
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, upstreamDialTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", r.cfg.Upstream.Host)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// offeredProtocols keeps, in the client's order, the protocols the relay
// reads.
func offeredProtocols(offered []string) []string {
	var keep []string
	for _, p := range offered {
		if slices.Contains(relayProtocols, p) {
			keep = append(keep, p)
		}
	}
	return keep
}

func (r *relay) track(c *relayConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c *relayConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

func (r *relay) count(outcome string) {
	r.cfg.Metrics.Connection(outcome)
}

// relayConn is one client connection and its upstream connection.
type relayConn struct {
	client, upstream *tls.Conn
	// busy counts the exchanges in flight that are neither watches nor
	// upgraded streams: a draining relay waits for them.
	busy atomic.Int32

	// mu serialises the scanner, which reads both directions.
	mu      sync.Mutex
	scanner passive.Scanner
	// unreadable is set once the scanner gave up; it is reported once.
	unreadable bool

	closeOnce sync.Once
}

func (c *relayConn) close() {
	c.closeOnce.Do(func() {
		_ = c.client.Close()
		_ = c.upstream.Close()
	})
}

// run relays until either side is done, then ends what the scanner still
// holds open.
func (c *relayConn) run(r *relay) {
	begin := func(req passive.Request) passive.Exchange {
		ex := r.cfg.Proxy.newExchange(context.Background(), req)
		if !ex.longRunning {
			c.busy.Add(1)
		}
		return &relayExchange{ex: ex, conn: c, recording: r.cfg.Proxy.observer != nil}
	}
	if c.client.ConnectionState().NegotiatedProtocol == "h2" {
		c.scanner = h2.New(begin)
	} else {
		c.scanner = h1.New(begin)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.copy(c.upstream, c.client, passive.Scanner.Client, r)
		// The client is done sending: tell the API server, which ends what
		// it was sending (a watch) and closes.
		_ = c.upstream.CloseWrite()
	}()
	c.copy(c.client, c.upstream, passive.Scanner.Server, r)
	// The API server closed: so does the client's connection.
	_ = c.client.CloseWrite()
	c.close()
	<-done
	c.mu.Lock()
	c.scanner.Close()
	c.mu.Unlock()
}

// copy reads src, shows each chunk to the scanner (see) and writes it to
// dst, until either fails.
func (c *relayConn) copy(dst, src *tls.Conn, see func(passive.Scanner, []byte), r *relay) {
	buf := relayBuffers.Get().(*[]byte)
	defer relayBuffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			c.mu.Lock()
			see(c.scanner, (*buf)[:n])
			if !c.unreadable {
				if scanErr := c.scanner.Err(); scanErr != nil {
					c.unreadable = true
					r.count("unreadable")
					r.cfg.Proxy.logf("apisnoop proxy: stopped recording a connection, still relaying it: %v", scanErr)
				}
			}
			c.mu.Unlock()
			if _, werr := dst.Write((*buf)[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.close()
			}
			return
		}
	}
}

var relayBuffers = sync.Pool{New: func() any {
	buf := make([]byte, relayBufferSize)
	return &buf
}}

// relayExchange records one exchange a scanner reads, as the reverse proxy
// records the requests it handles (exchange). The scanner's calls are
// serialised by the connection (relayConn.mu).
type relayExchange struct {
	ex        *exchange
	conn      *relayConn
	recording bool // the proxy has an observer
	ended     bool
}

func (x *relayExchange) RequestBody(p []byte) {
	x.ex.bytesIn.Add(int64(len(p)))
	if x.ex.body != nil && !x.ex.upgraded {
		x.ex.body.write(p)
	}
}

func (x *relayExchange) Response(resp passive.Response) {
	if resp.Status == 101 {
		x.ex.upgraded = true
	}
	if !x.recording {
		x.ex.status = resp.Status
		return
	}
	x.ex.responseStarted(resp.Status, resp.ContentType, resp.ContentEncoding)
}

func (x *relayExchange) ResponseBody(p []byte) {
	x.ex.bytesOut.Add(int64(len(p)))
	if x.ex.events != nil {
		x.ex.events.feed(p)
	}
}

func (x *relayExchange) End(bool) {
	if x.ended {
		return
	}
	x.ended = true
	if !x.ex.longRunning {
		x.conn.busy.Add(-1)
	}
	if x.recording {
		x.ex.finish()
	}
}

// connListener hands connections the relay cannot take to the reverse
// proxy's http.Server, which serves it as a listener.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// hand gives conn to the server, or reports false once it has stopped.
func (l *connListener) hand(conn net.Conn) bool {
	select {
	case l.conns <- conn:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
