package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/passive"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// exchange is what the proxy learns about one request while forwarding it.
// Counters touched by the transport's or the upgrade copier's goroutines are
// atomic; the rest is used by one goroutine at a time: the handler's, or on
// the relay, whichever copy loop holds the connection's lock.
//
// The exchange is also the forwarded request's context: the client's
// context, plus the exchange itself under exchangeKey. That is how the
// transport learns what begin decided from the client's own path, which
// Rewrite has since joined to the upstream's (see exchangeOf). Being the
// context, rather than a value in a context.WithValue, costs no allocation
// beyond the exchange. The transport's goroutines read the context and
// watch, which are set before the request goes upstream and never after.
type exchange struct {
	context.Context

	proxy        *Proxy
	base         record.Event // the fields known when the request arrives
	longRunning  bool
	watch        bool
	upgradeAsked bool
	// streaming says every write of the response must reach the client at
	// once; other responses are coalesced (see recordingWriter).
	streaming bool

	status   int
	upgraded bool
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	events   eventCounter
	body     *bodyCapture
}

// begin starts recording a request. Only the User-Agent is taken from the
// headers, and the Content-Type when bodies are kept (it says how the body
// is written): events never carry any other header.
func (p *Proxy) begin(r *http.Request) *exchange {
	return p.newExchange(r.Context(), passive.Request{
		Method:      r.Method,
		Path:        r.URL.Path,
		RawQuery:    r.URL.RawQuery,
		UserAgent:   r.UserAgent(),
		ContentType: r.Header.Get("Content-Type"),
		Upgrade:     isUpgrade(r.Header),
	})
}

// newExchange starts recording a request, whichever path forwards it: the
// handler (begin) or the relay (relayExchange).
func (p *Proxy) newExchange(ctx context.Context, req passive.Request) *exchange {
	info, _ := match.NewRequestInfo(req.Method, req.Path, req.RawQuery)
	ex := &exchange{
		Context: ctx,
		proxy:   p,
		watch:   isWatch(info),
		base: record.Event{
			ID:        p.nextID.Add(1),
			Time:      time.Now(),
			Method:    req.Method,
			Path:      req.Path,
			RawQuery:  req.RawQuery,
			UserAgent: req.UserAgent,
		},
	}
	ex.upgradeAsked = req.Upgrade
	ex.longRunning = ex.watch || req.Upgrade
	ex.streaming = ex.longRunning || streams(info)
	ex.base.Client = p.identity
	if p.keepBodies {
		ex.body = &bodyCapture{limit: p.maxBody}
		ex.base.ContentType = req.ContentType
	}
	return ex
}

// exchangeKey is the context key under which a forwarded request's context
// holds its exchange.
type exchangeKey struct{}

// Value makes the exchange a context carrying itself.
func (ex *exchange) Value(key any) any {
	if _, ok := key.(exchangeKey); ok {
		return ex
	}
	return ex.Context.Value(key)
}

// exchangeOf returns the exchange a request to the upstream belongs to, or
// nil when it did not come through the proxy's handler.
func exchangeOf(req *http.Request) *exchange {
	ex, _ := req.Context().Value(exchangeKey{}).(*exchange)
	return ex
}

// wrapRequestBody counts (and, when bodies are kept, copies the head of) the
// request body as the transport reads it upstream.
func (ex *exchange) wrapRequestBody(body io.ReadCloser) io.ReadCloser {
	return &countingBody{ReadCloser: body, n: &ex.bytesIn, capture: ex.body}
}

func (ex *exchange) wrapResponseWriter(w http.ResponseWriter) *recordingWriter {
	return &recordingWriter{ResponseWriter: w, ex: ex, coalesce: !ex.streaming}
}

// streams reports whether a request that is neither a watch nor an upgrade
// may still be answered with a stream: what the API server passes through
// from elsewhere (the proxy subresources and the deprecated /proxy/ prefix,
// container logs, which kubectl logs -f follows, exec, attach and
// port-forward over SPDY or WebSocket). Every other answer is complete when
// the API server sends it.
func streams(info match.RequestInfo) bool {
	if info.Verb == "proxy" {
		return true
	}
	switch info.Subresource {
	case "proxy", "log", "exec", "attach", "portforward":
		return true
	}
	return false
}

// responseStarted is called when the status line is committed.
func (ex *exchange) responseStarted(status int, contentType, contentEncoding string) {
	ex.status = status
	if ex.watch && status == http.StatusOK {
		ex.events = newEventCounter(contentType, contentEncoding)
	}
	if ex.longRunning {
		ev := ex.event(record.StageResponseStarted)
		ex.proxy.observe(&ev)
	}
}

// finish emits the ResponseComplete event.
func (ex *exchange) finish() {
	ev := ex.event(record.StageResponseComplete)
	if ex.events != nil {
		ev.WatchEvents = ex.events.count()
	}
	if ex.body != nil {
		body, truncated := ex.body.snapshot()
		ev.Body = bodyForEvent(ev.Path, body, truncated)
		ev.BodyTruncated = truncated
	}
	ex.proxy.observe(&ev)
}

func (ex *exchange) event(stage record.Stage) record.Event {
	ev := ex.base
	ev.Stage = stage
	ev.Status = ex.status
	ev.Duration = time.Since(ex.base.Time)
	ev.BytesIn = ex.bytesIn.Load()
	ev.BytesOut = ex.bytesOut.Load()
	ev.Upgraded = ex.upgraded
	return ev
}

// observe hands an event to the observer. A failing observer must never
// break the traffic it watches, so a panic is logged and forgotten.
func (p *Proxy) observe(ev *record.Event) {
	defer func() {
		if v := recover(); v != nil {
			p.logf("apisnoop proxy: observer panicked on %s %s: %v", ev.Method, ev.Path, v)
		}
	}()
	p.observer.Observe(ev)
}

// countingBody passes a request body through, counting its bytes.
type countingBody struct {
	io.ReadCloser
	n       *atomic.Int64
	capture *bodyCapture
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
		if b.capture != nil {
			b.capture.write(p[:n])
		}
	}
	return n, err
}

// bodyCapture keeps the first limit bytes of a body. It is written by the
// transport's goroutine and read by the handler's.
type bodyCapture struct {
	mu        sync.Mutex
	limit     int
	buf       []byte
	truncated bool
}

func (c *bodyCapture) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.buf)
	if len(p) > room {
		p = p[:room]
		c.truncated = true
	}
	c.buf = append(c.buf, p...)
}

func (c *bodyCapture) snapshot() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}

// recordingWriter sees the status and counts the response bytes on their way
// to the client. ReverseProxy flushes and hijacks through
// http.ResponseController, which finds the underlying writer via Unwrap.
//
// A response that is not a stream is coalesced: ReverseProxy writes each
// piece as it arrives from the API server and, when the length is unknown
// (lists, which the API server encodes item by item), flushes after each,
// which costs a TLS record and a write system call per piece of a few KiB.
// Instead, the pieces are gathered in a buffer of coalesceSize, flushes are
// dropped, and the buffer goes to the client when full and when the
// response ends (drain). Nothing reaches the client later than the end of
// the response, and streams (watches, logs, exec, proxy) are never held.
type recordingWriter struct {
	http.ResponseWriter
	ex          *exchange
	wroteHeader bool
	coalesce    bool
	buf         *[]byte // from coalesceBuffers while coalescing
}

// coalesceSize is the largest write a coalesced response makes: a TLS
// record carries at most 16 KiB, so a write of 32 KiB is two records and,
// as the server's buffers are smaller, goes out with few system calls.
const coalesceSize = 32 << 10

var coalesceBuffers = sync.Pool{New: func() any {
	buf := make([]byte, 0, coalesceSize)
	return &buf
}}

// writeOut writes p to the client and counts what went.
func (w *recordingWriter) writeOut(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.ex.bytesOut.Add(int64(n))
	return n, err
}

// sendBuffered writes what is gathered to the client.
func (w *recordingWriter) sendBuffered() error {
	if w.buf == nil || len(*w.buf) == 0 {
		return nil
	}
	_, err := w.writeOut(*w.buf)
	*w.buf = (*w.buf)[:0]
	return err
}

// drain sends what is gathered and gives the buffer back. The proxy calls
// it when ReverseProxy is done with the response.
func (w *recordingWriter) drain() error {
	if w.buf == nil {
		return nil
	}
	err := w.sendBuffered()
	coalesceBuffers.Put(w.buf)
	w.buf = nil
	return err
}

// gather adds p to the buffer, sending it whenever it is full.
func (w *recordingWriter) gather(p []byte) (int, error) {
	if w.buf == nil {
		w.buf = coalesceBuffers.Get().(*[]byte)
	}
	written := 0
	for len(p) > 0 {
		if len(*w.buf) == cap(*w.buf) {
			if err := w.sendBuffered(); err != nil {
				return written, err
			}
		}
		if len(*w.buf) == 0 && len(p) >= cap(*w.buf) {
			n, err := w.writeOut(p) // as large as the buffer: no copy
			return written + n, err
		}
		n := min(cap(*w.buf)-len(*w.buf), len(p))
		*w.buf = append(*w.buf, p[:n]...)
		written += n
		p = p[n:]
	}
	return written, nil
}

func (w *recordingWriter) WriteHeader(code int) {
	// 1xx informational responses (103 Early Hints) precede the real one.
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		h := w.Header()
		w.ex.responseStarted(code, h.Get("Content-Type"), h.Get("Content-Encoding"))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.coalesce {
		return w.gather(p)
	}
	n, err := w.writeOut(p)
	if w.ex.events != nil {
		w.ex.events.feed(p[:n])
	}
	return n, err
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush and FlushError serve callers that type-assert http.Flusher instead
// of using http.ResponseController.
func (w *recordingWriter) Flush() { _ = w.FlushError() }

func (w *recordingWriter) FlushError() error {
	if w.coalesce {
		return nil // the response ends soon; drain sends it
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack is how ReverseProxy takes over the client connection after the
// upstream answered 101 Switching Protocols; from then on the bytes of the
// upgraded stream are counted on the connection itself.
func (w *recordingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.wroteHeader = true
	w.ex.upgraded = true
	w.ex.responseStarted(http.StatusSwitchingProtocols, "", "")
	return &countingConn{Conn: conn, in: &w.ex.bytesIn, out: &w.ex.bytesOut}, brw, nil
}

// countingConn counts the bytes of an upgraded connection: reads are what
// the client sends, writes what it receives.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
