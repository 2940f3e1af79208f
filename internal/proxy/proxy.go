// Package proxy is the recording proxy: a reverse proxy in front of the real
// API server that reports every request it forwards to a record.Observer and
// changes nothing the client or the API server sees, plus a CONNECT mode for
// clients that honour HTTPS_PROXY.
package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"

	"apisnoop.dev/kube-apisnoop/internal/record"
)

// Config says where the proxy forwards to and whom it reports to.
type Config struct {
	// Upstream is the real API server, e.g. https://10.96.0.1:443.
	Upstream *url.URL
	// Transport reaches the upstream: verified with the cluster CA, and it
	// may add the user's credentials (client certificates, exec plugins,
	// tokens). When it adds none, the client's own Authorization header is
	// forwarded unchanged. It must not add compression of its own, or the
	// API server sees an Accept-Encoding the client never sent (and
	// compresses what the proxy then decompresses): New uses a copy of an
	// *http.Transport with DisableCompression set; any other RoundTripper
	// must see to it (see resttransport.For).
	Transport http.RoundTripper
	// UpgradeTransport carries requests with "Connection: Upgrade" (exec,
	// attach, port-forward over WebSocket or SPDY), and every other request
	// that is not a watch: watches go over Transport (see
	// upgradeAwareTransport). It must speak HTTP/1.1 only, because 101
	// Switching Protocols does not exist in HTTP/2. When nil and Transport
	// is an *http.Transport, a copy of it with HTTP/2 disabled is used; for
	// any other Transport it is required. It must not add compression
	// either; New turns it off in an *http.Transport.
	UpgradeTransport http.RoundTripper
	// Observer receives the events; nil records nothing.
	Observer record.Observer
	// Identity says who the client is (pod, namespace, service account):
	// the pod the sidecar serves. It must hold no credentials.
	Identity record.Identity
	// KeepBodies puts the request body, capped at MaxBodyBytes and with
	// Secret data redacted, into ResponseComplete events. The body still
	// travels upstream unchanged and uncapped.
	KeepBodies   bool
	MaxBodyBytes int
	// ErrorLog receives proxy errors (unreachable upstream, aborted
	// streams, observer panics); nil means the standard logger.
	ErrorLog *log.Logger
}

// defaultMaxBodyBytes caps kept bodies when KeepBodies is set without a cap.
const defaultMaxBodyBytes = 64 << 10

// Proxy is the recording reverse proxy. It is an http.Handler.
type Proxy struct {
	reverse    *httputil.ReverseProxy
	observer   record.Observer
	identity   record.Identity
	keepBodies bool
	maxBody    int
	errorLog   *log.Logger
	nextID     atomic.Uint64
}

// New checks the config and builds the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstream == nil || cfg.Upstream.Scheme == "" || cfg.Upstream.Host == "" {
		return nil, errors.New("build proxy: upstream must be an absolute URL")
	}
	if cfg.Transport == nil {
		return nil, errors.New("build proxy: a transport to the upstream is required (verified with the cluster CA)")
	}
	if t, ok := cfg.Transport.(*http.Transport); ok && !t.DisableCompression {
		t = t.Clone()
		t.DisableCompression = true
		cfg.Transport = t
	}
	upgrade, err := upgradeTransportFor(cfg.Transport, cfg.UpgradeTransport)
	if err != nil {
		return nil, fmt.Errorf("build proxy: %w", err)
	}
	if t, ok := upgrade.(*http.Transport); ok && !t.DisableCompression {
		t = t.Clone()
		t.DisableCompression = true
		upgrade = t
	}
	p := &Proxy{
		observer:   cfg.Observer,
		identity:   cfg.Identity,
		keepBodies: cfg.KeepBodies,
		maxBody:    cfg.MaxBodyBytes,
		errorLog:   cfg.ErrorLog,
	}
	if p.maxBody <= 0 {
		p.maxBody = defaultMaxBodyBytes
	}
	upstream := *cfg.Upstream
	p.reverse = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&upstream)
			// SetURL leaves Out.Host empty, so the Host header becomes the
			// upstream's, as if the client had dialled it directly.
			restoreForwardingHeaders(pr)
		},
		Transport: &upgradeAwareTransport{normal: cfg.Transport, upgrade: upgrade},
		// No periodic flushing: ReverseProxy already flushes every write of
		// a response of unknown length (watches, logs -f, chunked lists),
		// so watch events reach the client as the API server sends them;
		// the recording writer drops those flushes for answers that are no
		// stream (see recordingWriter). Flushing responses of known length
		// too would cost a write and an HTTP/2 frame per request and show
		// the client nothing sooner.
		FlushInterval: 0,
		ErrorHandler:  p.writeUpstreamError,
		ErrorLog:      cfg.ErrorLog,
		BufferPool:    copyBuffers,
	}
	return p, nil
}

// copyBuffers recycles ReverseProxy's response copy buffers, which would
// otherwise be a fresh 32 KiB per request.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any {
	buf := make([]byte, 32<<10)
	return &buf
}}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte { return *b.pool.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

// forwardingHeaders are the headers ReverseProxy strips before Rewrite. The
// proxy is meant to be invisible, so whatever the client sent goes on as is.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

func restoreForwardingHeaders(pr *httputil.ProxyRequest) {
	for _, name := range forwardingHeaders {
		if values, ok := pr.In.Header[name]; ok {
			pr.Out.Header[name] = values
		}
	}
}

// ServeHTTP forwards the request upstream and reports it to the observer.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := p.begin(r)
	if ex.longRunning {
		// Watches and upgraded streams never end by themselves; they end
		// when the server drains (see Serve) so shutdown need not wait.
		ctx, release := withDrain(ex.Context)
		defer release()
		ex.Context = ctx
	}
	// ReverseProxy's outgoing request inherits this context, so the
	// transport finds the exchange there (see upgradeAwareTransport).
	r = r.WithContext(ex)
	if p.observer == nil {
		p.reverse.ServeHTTP(w, r)
		return
	}
	// The deferred finish also runs when ReverseProxy aborts a stream with
	// panic(http.ErrAbortHandler) (a watch whose client went away), so every
	// request gets its ResponseComplete event.
	defer ex.finish()
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = ex.wrapRequestBody(r.Body)
	}
	rw := ex.wrapResponseWriter(w)
	p.reverse.ServeHTTP(rw, r)
	// The coalesced rest goes out before the handler returns, so that the
	// server's end of the response (the last chunk, trailers) follows it.
	_ = rw.drain()
}

// writeUpstreamError answers a request the upstream could not serve with a
// Kubernetes Status, so that kubectl and client-go print a useful message.
func (p *Proxy) writeUpstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	p.logf("apisnoop proxy: %s %s: %v", r.Method, r.URL.Path, err)
	body, _ := json.Marshal(upstreamErrorStatus{
		Kind: "Status", APIVersion: "v1", Status: "Failure",
		Message: fmt.Sprintf("apisnoop proxy: reach API server: %v", err),
		Reason:  "ServiceUnavailable",
		Code:    http.StatusBadGateway,
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write(body)
}

// upstreamErrorStatus is the JSON of a metav1.Status, spelled out because
// the meta/v1 package would link most of apimachinery into the sidecar.
// TestUpstreamDownAnswers502Status decodes it into a metav1.Status.
type upstreamErrorStatus struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason"`
	Code       int      `json:"code"`
}

func (p *Proxy) logf(format string, args ...any) {
	if p.errorLog != nil {
		p.errorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}
