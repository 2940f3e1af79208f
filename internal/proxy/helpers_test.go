package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// runningProxy is a Proxy served by Serve on loopback.
type runningProxy struct {
	url    *url.URL
	ca     *proxytest.CA
	client *http.Client // trusts the proxy, may use HTTP/2
	h1     *http.Client // trusts the proxy, HTTP/1.1 only
}

// startProxy builds a Proxy from cfg and serves it until the test ends.
func startProxy(t testing.TB, cfg Config) *runningProxy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return serveHandler(t, p)
}

// startServing serves h with Serve on loopback under a fresh test CA; cancel
// starts the shutdown and served reports how it ended.
func startServing(t testing.TB, h http.Handler) (addr string, ca *proxytest.CA, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	return serveOnLoopback(t, func(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
		return Serve(ctx, ln, h, cert)
	})
}

// serveOnLoopback runs serve on a loopback listener with a serving pair of a
// fresh test CA; cancel starts the shutdown and served reports how it ended.
func serveOnLoopback(t testing.TB, serve func(context.Context, net.Listener, tls.Certificate) error) (addr string, ca *proxytest.CA, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	ca = proxytest.NewCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cert := ca.Serving(t)
	go func() { done <- serve(ctx, ln, cert) }()
	return ln.Addr().String(), ca, cancel, done
}

func serveHandler(t testing.TB, h http.Handler) *runningProxy {
	t.Helper()
	addr, ca, cancel, served := startServing(t, h)
	return running(t, addr, ca, cancel, served)
}

// running is a proxy serving on addr under ca, with clients of both
// protocols, shut down (cancel) when the test ends.
func running(t testing.TB, addr string, ca *proxytest.CA, cancel context.CancelFunc, served <-chan error) *runningProxy {
	px := &runningProxy{
		url:    &url.URL{Scheme: "https", Host: addr},
		ca:     ca,
		client: &http.Client{Transport: clientTransport(ca.Pool, true)},
		h1:     &http.Client{Transport: clientTransport(ca.Pool, false)},
	}
	t.Cleanup(func() {
		// Idle HTTP/2 connections would make shutdown wait for the
		// client's answer to GOAWAY.
		px.client.CloseIdleConnections()
		px.h1.CloseIdleConnections()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return px
}

// starter starts a proxy of a config on one forwarding path.
type starter func(testing.TB, Config) *runningProxy

// onEachPath runs test with the reverse proxy (Serve) and with the relay
// (ServeRelay): both must pass the same tests.
func onEachPath(t *testing.T, test func(*testing.T, starter)) {
	t.Run("reverse proxy", func(t *testing.T) { test(t, startProxy) })
	t.Run("relay", func(t *testing.T) { test(t, startRelay) })
}

// startRelay builds a Proxy from cfg and serves it with ServeRelay until the
// test ends. The relay reaches the upstream with the TLS settings of
// cfg.Transport, which must be an *http.Transport.
func startRelay(t testing.TB, cfg Config) *runningProxy {
	t.Helper()
	addr, ca, cancel, served := startRelayServing(t, cfg, nil)
	return running(t, addr, ca, cancel, served)
}

// startRelayServing serves cfg with ServeRelay, counting into metrics (nil
// counts nothing), on loopback under a fresh test CA; cancel starts the
// shutdown and served reports how it ended.
func startRelayServing(t testing.TB, cfg Config, metrics *record.Metrics) (addr string, ca *proxytest.CA, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tr, ok := cfg.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("the relay takes its upstream TLS settings from an *http.Transport, not %T", cfg.Transport)
	}
	upstreamTLS := tr.TLSClientConfig
	if upstreamTLS == nil {
		upstreamTLS = &tls.Config{}
	}
	return serveOnLoopback(t, func(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
		return ServeRelay(ctx, ln, RelayConfig{
			Proxy: p, Upstream: cfg.Upstream, UpstreamTLS: upstreamTLS, Metrics: metrics,
			Serving: &tls.Config{Certificates: []tls.Certificate{cert}},
		})
	})
}

func clientTransport(roots *x509.CertPool, http2 bool) *http.Transport {
	t := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:  http2,
		DisableCompression: true,
	}
	if !http2 {
		t.TLSClientConfig.NextProtos = []string{"http/1.1"}
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return t
}

// upstreamTransport is how the proxy reaches an httptest upstream: verified
// with its certificate, HTTP/2 allowed, no compression of its own.
func upstreamTransport(roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}
}

func pemCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// httpEcho is an upstream that hands each request body to received.
func httpEcho(received chan<- []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- body
		w.WriteHeader(http.StatusCreated)
	})
}
