package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/record"
)

// exchange is what the proxy learns about one request while forwarding it.
// Counters touched by the transport's or the upgrade copier's goroutines are
// atomic; the rest is only used on the handler goroutine.
type exchange struct {
	proxy       *Proxy
	base        record.Event // the fields known when the request arrives
	longRunning bool
	watch       bool

	status   int
	upgraded bool
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	events   eventCounter
	body     *bodyCapture
}

// begin starts recording a request. Only the User-Agent is taken from the
// headers: events never carry any other header.
func (p *Proxy) begin(r *http.Request) *exchange {
	ex := &exchange{
		proxy: p,
		watch: isWatch(r.Method, r.URL),
		base: record.Event{
			ID:        p.nextID.Add(1),
			Time:      time.Now(),
			Method:    r.Method,
			Path:      r.URL.Path,
			RawQuery:  r.URL.RawQuery,
			UserAgent: r.UserAgent(),
		},
	}
	ex.longRunning = ex.watch || isUpgrade(r.Header)
	ex.base.Client = p.identity
	if p.keepBodies {
		ex.body = &bodyCapture{limit: p.maxBody}
	}
	return ex
}

// wrapRequestBody counts (and, when bodies are kept, copies the head of) the
// request body as the transport reads it upstream.
func (ex *exchange) wrapRequestBody(body io.ReadCloser) io.ReadCloser {
	return &countingBody{ReadCloser: body, n: &ex.bytesIn, capture: ex.body}
}

func (ex *exchange) wrapResponseWriter(w http.ResponseWriter) http.ResponseWriter {
	return &recordingWriter{ResponseWriter: w, ex: ex}
}

// responseStarted is called when the status line is committed.
func (ex *exchange) responseStarted(status int, header http.Header) {
	ex.status = status
	if ex.watch && status == http.StatusOK {
		ex.events = newEventCounter(header.Get("Content-Type"), header.Get("Content-Encoding"))
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
type recordingWriter struct {
	http.ResponseWriter
	ex          *exchange
	wroteHeader bool
}

func (w *recordingWriter) WriteHeader(code int) {
	// 1xx informational responses (103 Early Hints) precede the real one.
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		w.ex.responseStarted(code, w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.ex.bytesOut.Add(int64(n))
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
	w.ex.responseStarted(http.StatusSwitchingProtocols, w.Header())
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
