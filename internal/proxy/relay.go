package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	// Upstream is the real API server; only its host and port (443 when
	// it names none) are used.
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
	// upstreamDialTimeout bounds reaching the API server during a client's
	// handshake. It is well below client-go's TLS handshake timeout (10 s),
	// so that a client whose API server hangs is handed to the reverse
	// proxy, which tells it why, before it gives up on the handshake.
	upstreamDialTimeout = 4 * time.Second
	// halfClosedLinger is how long a connection whose one side has ended
	// waits for the other to end too: an API server that stops answering
	// must not keep a connection (two goroutines, two sockets) after its
	// client is gone.
	halfClosedLinger = shutdownGrace
	// clientDrainLinger is how long the client may go on sending after the
	// API server closed, its bytes read and dropped, before its socket is
	// closed: closing a socket with unread bytes resets it, and the reset
	// can destroy an answer (a 413 to a large upload) the client has not
	// read yet. net/http's server waits as long after its half-close. The
	// close itself is orderly, so what the client has still to read
	// reaches it.
	clientDrainLinger = 500 * time.Millisecond
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
// spends about half the CPU per GET (measured with hack/bench-proxy.sh). When the upstream cannot be
// reached during a handshake (within upstreamDialTimeout, well before
// client-go gives up on the handshake), the connection goes to the reverse
// proxy instead, which answers each request with a 502 Status while the
// API server stays away: clients see why.
//
// On shutdown it stops accepting, aborts handshakes under way, closes
// connections with no request in flight (watches and upgraded streams count
// as none: clients re-establish them) and gives the others shutdownGrace to
// finish, while the reverse proxy shuts down likewise.
func ServeRelay(ctx context.Context, ln net.Listener, cfg RelayConfig) error {
	if cfg.Proxy == nil || cfg.Upstream == nil || cfg.Upstream.Host == "" || cfg.UpstreamTLS == nil || cfg.Serving == nil {
		return errors.New("serve relay: the proxy, upstream, upstream TLS and serving TLS are required")
	}
	if !CanRelay(cfg.Upstream) {
		return fmt.Errorf("serve relay: %s: the relay dials an https upstream and forwards request paths unchanged, so it cannot reach an API server behind a path prefix; serve the reverse proxy instead", cfg.Upstream.Redacted())
	}
	r := &relay{cfg: cfg, conns: map[*relayConn]struct{}{}, upstreamAddr: upstreamAddress(cfg.Upstream)}
	r.handshakes, r.stopHandshakes = context.WithCancel(context.Background())
	r.fallback = NewConnQueue(ln.Addr())
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
	fallbackShutdown := make(chan error, 1)
	go func() { fallbackShutdown <- fallback.Shutdown() }()
	r.drain()
	if shutdownErr := <-fallbackShutdown; err == nil {
		err = shutdownErr
	}
	<-fallbackDone
	return err
}

// upstreamAddress is the host and port to dial for u, the https port when u
// names none.
func upstreamAddress(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// CanRelay reports whether ServeRelay can forward to upstream: an https URL
// with no path, since the relay changes no byte of a request's path.
func CanRelay(upstream *url.URL) bool {
	return upstream.Scheme == "https" && (upstream.Path == "" || upstream.Path == "/")
}

type relay struct {
	cfg          RelayConfig
	upstreamAddr string
	fallback     *ConnQueue
	// handshakes is cancelled when the relay drains, which aborts the
	// handshakes under way.
	handshakes     context.Context
	stopHandshakes context.CancelFunc

	mu       sync.Mutex
	conns    map[*relayConn]struct{}
	draining bool
	wg       sync.WaitGroup
}

func (r *relay) accept(ln net.Listener) error {
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like pass: wait and retry,
			// as http.Server does, rather than end the sidecar.
			if temporary, ok := err.(interface{ Temporary() bool }); ok && temporary.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				r.cfg.Proxy.logf("apisnoop proxy: accept: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("serve relay: %w", err)
		}
		backoff = 0
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(raw)
		}()
	}
}

// drain closes connections as they become idle, and every one after
// shutdownGrace, then waits for their goroutines (handshakes were aborted).
func (r *relay) drain() {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	r.stopHandshakes()
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
	ctx, cancel := context.WithTimeout(r.handshakes, handshakeTimeout)
	err := client.HandshakeContext(ctx)
	cancel()
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
		if !r.fallback.Push(client) {
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
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 30 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, upstreamDialTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", r.upstreamAddr)
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
	// unreadable is set once the scanner gave up (or panicked): from then
	// on the bytes are only relayed. It is reported once.
	unreadable bool
	// open holds the exchanges begun and not yet ended, which a scanner
	// that panicked can no longer end.
	open map[*relayExchange]struct{}

	closeOnce sync.Once
}

// close ends both connections with TLS close_notify alerts.
func (c *relayConn) close() {
	c.closeOnce.Do(func() {
		_ = c.client.Close()
		_ = c.upstream.Close()
	})
}

// abort resets both connections: no close_notify, and a TCP reset rather
// than an end. A client whose API server reset the connection (or stopped
// answering) sees a failure, not a clean end that would make a response
// delimited by the close look complete; Go's TLS reads a bare end as one.
func (c *relayConn) abort() {
	c.closeOnce.Do(func() {
		for _, conn := range []*tls.Conn{c.client, c.upstream} {
			if tcp, ok := conn.NetConn().(*net.TCPConn); ok {
				_ = tcp.SetLinger(0)
			}
			_ = conn.NetConn().Close()
		}
	})
}

// run relays until both sides are done, then ends what the scanner still
// holds open.
func (c *relayConn) run(r *relay) {
	begin := func(req passive.Request) passive.Exchange {
		req.Path = serverPath(req.Method, req.Path)
		ex := r.cfg.Proxy.newExchange(context.Background(), req)
		if !ex.longRunning {
			c.busy.Add(1)
		}
		x := &relayExchange{ex: ex, conn: c}
		c.open[x] = struct{}{}
		return x
	}
	c.open = map[*relayExchange]struct{}{}
	if c.client.ConnectionState().NegotiatedProtocol == "h2" {
		c.scanner = h2.New(begin)
	} else {
		c.scanner = h1.New(begin)
	}
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		c.clientToUpstream(r)
	}()
	c.upstreamToClient(r, clientDone)
	<-clientDone
	c.scan(r, func(s passive.Scanner) { s.Close() })
}

// serverPath is the path as the API server matches it: net/http parses a
// request target with url.ParseRequestURI, for HTTP/1.1 and HTTP/2 alike,
// so the recording must too, or a Secret written to .../%73ecrets or to
// https://host/api/v1/.../secrets would keep its data. A target net/http
// refuses is kept as sent: the API server never acts on it.
func serverPath(method, target string) string {
	if method == http.MethodConnect || (strings.HasPrefix(target, "/") && !strings.Contains(target, "%")) {
		return target
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return target
	}
	return u.Path
}

// clientToUpstream copies what the client sends. When the client is done,
// the API server is told (close_notify), and given halfClosedLinger to end
// what it still sends (a watch the client abandoned ends at once).
func (c *relayConn) clientToUpstream(r *relay) {
	err := c.copy(c.upstream, c.client, passive.Scanner.Client, r)
	var werr *writeError
	switch {
	case errors.As(err, &werr):
		// The API server stopped reading: drop what the client still
		// sends until upstreamToClient has passed on the answer and ended
		// the client's connection.
		_, _ = io.Copy(io.Discard, c.client)
		return
	case errors.Is(err, net.ErrClosed):
		return // closed by upstreamToClient or a drain
	case err != nil && !errors.Is(err, io.EOF):
		c.abort()
		return
	}
	_ = c.upstream.CloseWrite()
	_ = c.upstream.SetReadDeadline(time.Now().Add(halfClosedLinger))
}

// upstreamToClient copies what the API server sends. When it is done, the
// client is told (close_notify and a TCP half-close), and given
// clientDrainLinger to end its side, its late bytes read and dropped
// meanwhile, before both are closed; a reset from the API server reaches
// the client as a reset.
func (c *relayConn) upstreamToClient(r *relay, clientDone <-chan struct{}) {
	err := c.copy(c.client, c.upstream, passive.Scanner.Server, r)
	var werr *writeError
	if err != nil && !errors.Is(err, io.EOF) && !errors.As(err, &werr) {
		c.abort()
		return
	}
	_ = c.client.CloseWrite()
	if tcp, ok := c.client.NetConn().(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
	linger := time.NewTimer(clientDrainLinger)
	defer linger.Stop()
	select {
	case <-clientDone:
	case <-linger.C:
	}
	c.close()
}

// writeError is a failed write to the other side, told apart from a failed
// read of this side.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// copy reads src, shows each chunk to the scanner (see) and writes it to
// dst, until either fails; a read's io.EOF is returned as is, a write's
// error as a *writeError.
func (c *relayConn) copy(dst, src *tls.Conn, see func(passive.Scanner, []byte), r *relay) error {
	buf := relayBuffers.Get().(*[]byte)
	defer relayBuffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			chunk := (*buf)[:n]
			c.scan(r, func(s passive.Scanner) { see(s, chunk) })
			if _, werr := dst.Write(chunk); werr != nil {
				return &writeError{werr}
			}
		}
		if err != nil {
			return err
		}
	}
}

// scan runs one call of the scanner (and through it, of the recording)
// under the connection's lock. A scanner that gave up, or panicked, stops
// being called: the connection is relayed on, unrecorded, and counted as
// unreadable once.
func (c *relayConn) scan(r *relay, call func(passive.Scanner)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unreadable {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			// What the scanner held open ends unrecorded: nothing can be
			// trusted of it.
			for x := range c.open {
				x.stop()
			}
			c.giveUp(r, fmt.Errorf("reading the connection panicked: %v", v))
		}
	}()
	call(c.scanner)
	if err := c.scanner.Err(); err != nil {
		c.giveUp(r, err)
	}
}

// giveUp stops recording the connection. Its requests are unseen from now
// on, so a draining relay can no longer tell it idle: it counts as busy
// until the grace is over.
func (c *relayConn) giveUp(r *relay, err error) {
	c.unreadable = true
	c.busy.Add(1)
	r.count("unreadable")
	r.cfg.Proxy.logf("apisnoop proxy: stopped recording a connection, still relaying it: %v", err)
}

var relayBuffers = sync.Pool{New: func() any {
	buf := make([]byte, relayBufferSize)
	return &buf
}}

// relayExchange records one exchange a scanner reads, as the reverse proxy
// records the requests it handles (exchange). The scanner's calls are
// serialised by the connection (relayConn.mu).
type relayExchange struct {
	ex   *exchange
	conn *relayConn
}

// recording says the proxy has an observer to report to.
func (x *relayExchange) recording() bool { return x.ex.proxy.observer != nil }

func (x *relayExchange) RequestBody(p []byte) {
	x.ex.bytesIn.Add(int64(len(p)))
	if x.ex.body != nil && !x.ex.upgraded {
		x.ex.body.write(p)
	}
}

func (x *relayExchange) Response(resp passive.Response) {
	// A 101, or a 2xx to an extended CONNECT, switches the stream to
	// another protocol: its bytes are counted, never kept as a body.
	extendedConnect := x.ex.upgradeAsked && x.ex.base.Method == http.MethodConnect
	if resp.Status == http.StatusSwitchingProtocols || (extendedConnect && resp.Status >= 200 && resp.Status < 300) {
		x.ex.upgraded = true
	}
	if !x.recording() {
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
	if x.stop() && x.recording() {
		x.ex.finish()
	}
}

// Refused drops a request the API server did not process: the client sends
// it again, and it is recorded then.
func (x *relayExchange) Refused() { x.stop() }

// stop ends the exchange once, reporting whether this call did: an
// exchange is open while the connection holds it.
func (x *relayExchange) stop() bool {
	if _, open := x.conn.open[x]; !open {
		return false
	}
	delete(x.conn.open, x)
	if !x.ex.longRunning {
		x.conn.busy.Add(-1)
	}
	return true
}
