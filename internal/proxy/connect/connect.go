// Package connect is the recording proxy's CONNECT mode: an HTTP proxy for
// clients that honour HTTPS_PROXY, which opens the TLS of the API server's
// tunnels to record them with the recording handler (package proxy) and
// passes every other tunnel through untouched. It is apart from package
// proxy because it links goproxy, which the sidecar binary (it only serves
// the reverse proxy) must not link: what a binary links is resident memory
// in every recorded pod.
package connect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/elazarl/goproxy"

	"apisnoop.dev/kube-apisnoop/internal/proxy"
)

// Config configures the CONNECT mode.
type Config struct {
	// Intercept lists the host:port pairs that clients CONNECT to for the
	// API server (the server of their kubeconfig); a missing port means 443.
	Intercept []string
	// Handler serves the intercepted requests: the recording reverse proxy,
	// so that recording and streaming are the same as in reverse mode.
	Handler http.Handler
	// GetCertificate gives the certificate presented to clients of
	// intercepted hosts, asked at each handshake so that a renewed one is
	// taken up. When nil, CA signs one per intercepted host; the clients must
	// trust CA.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	CA             *tls.Certificate
}

// Proxy is the CONNECT-mode proxy; it is an http.Handler to be served
// as plain HTTP (clients set HTTPS_PROXY=http://host:port).
//
// goproxy only handles the CONNECT handshake and the blind tunnels. Its MITM
// path (ConnectMitm) answers through its own RoundTripper and only passes
// WebSocket upgrades, not SPDY ones, so intercepted connections are hijacked
// instead and served by an http.Server of our own feeding Handler: HTTP/2 and
// HTTP/1.1, watches flushed write by write, upgrades passed through.
type Proxy struct {
	goproxy   *goproxy.ProxyHttpServer
	intercept map[string]*tls.Config

	mitm      *proxy.Server
	conns     *proxy.ConnQueue
	startOnce sync.Once
}

// New builds the CONNECT proxy, signing the intercepted hosts' certificates
// up front.
func New(cfg Config) (*Proxy, error) {
	if cfg.Handler == nil {
		return nil, errors.New("build connect proxy: handler is required")
	}
	if len(cfg.Intercept) == 0 {
		return nil, errors.New("build connect proxy: no host to intercept")
	}
	if cfg.GetCertificate == nil && cfg.CA == nil {
		return nil, errors.New("build connect proxy: a certificate or a CA is required")
	}

	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	// NewProxyHttpServer dials through $HTTPS_PROXY when set; this process
	// is likely the HTTPS_PROXY itself, so tunnels are dialled directly.
	gp.ConnectDial = nil
	gp.Tr = &http.Transport{DialContext: (&net.Dialer{}).DialContext}

	c := &Proxy{goproxy: gp, intercept: map[string]*tls.Config{}, conns: proxy.NewConnQueue(tunnels{})}
	for _, hostport := range cfg.Intercept {
		key := normalizeHostPort(hostport)
		getCertificate := cfg.GetCertificate
		if getCertificate == nil {
			signed, err := goproxy.TLSConfigFromCA(cfg.CA)(key, &goproxy.ProxyCtx{Proxy: gp})
			if err != nil {
				return nil, fmt.Errorf("sign certificate for %s: %w", key, err)
			}
			cert := &signed.Certificates[0]
			getCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c.intercept[key] = &tls.Config{
			GetCertificate: getCertificate,
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1"},
		}
	}
	c.mitm = proxy.NewServer(cfg.Handler, nil)

	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		tlsConfig, ok := c.intercept[normalizeHostPort(host)]
		if !ok {
			return goproxy.OkConnect, host
		}
		return &goproxy.ConnectAction{
			Action: goproxy.ConnectHijack,
			Hijack: func(req *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
				c.serveIntercepted(req, client, tlsConfig)
			},
		}, host
	})
	return c, nil
}

// ServeHTTP handles proxy requests: CONNECT, and plain-HTTP forwarding,
// which goproxy does unrecorded.
func (c *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.goproxy.ServeHTTP(w, r)
}

// serveIntercepted confirms the tunnel and hands its TLS server side to the
// MITM http.Server, which does the handshake and serves the requests.
func (c *Proxy) serveIntercepted(req *http.Request, client net.Conn, tlsConfig *tls.Config) {
	c.startOnce.Do(func() {
		go func() { _ = c.mitm.HTTP.Serve(c.conns) }()
	})
	major, minor := req.ProtoMajor, req.ProtoMinor
	if major == 0 {
		major, minor = 1, 1
	}
	if _, err := fmt.Fprintf(client, "HTTP/%d.%d 200 Connection established\r\n\r\n", major, minor); err != nil {
		_ = client.Close()
		return
	}
	if !c.conns.Push(tls.Server(client, tlsConfig)) {
		_ = client.Close()
	}
}

// Serve serves the proxy protocol as plain HTTP on ln until ctx is done,
// then shuts down: intercepted streams are drained like in proxy.Serve,
// blind tunnels are left to end by themselves.
func (c *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	srv := proxy.NewServer(c, nil)
	err := srv.ServeUntilDone(ctx, func(hs *http.Server) error { return hs.Serve(ln) })
	if closeErr := c.Close(); err == nil {
		err = closeErr
	}
	return err
}

// Close shuts down the server of intercepted connections.
func (c *Proxy) Close() error {
	err := c.mitm.Shutdown()
	c.conns.Close()
	return err
}

// Run builds the CONNECT proxy intercepting the given hosts with handler and
// certificates from getCertificate, and serves it on ln until ctx is done.
// It is the CONNECT mode of `apisnoop proxy` (sidecar.ConnectMode).
func Run(ctx context.Context, ln net.Listener, intercept []string, handler http.Handler,
	getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	c, err := New(Config{Intercept: intercept, Handler: handler, GetCertificate: getCertificate})
	if err != nil {
		_ = ln.Close()
		return err
	}
	return c.Serve(ctx, ln)
}

// normalizeHostPort makes "Host", "host:443" and "HOST:443" the same key.
func normalizeHostPort(hostport string) string {
	hostport = strings.ToLower(hostport)
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return net.JoinHostPort(strings.Trim(hostport, "[]"), "443")
	}
	return hostport
}

// tunnels is the Addr of the queue of intercepted tunnels.
type tunnels struct{}

func (tunnels) Network() string { return "connect" }
func (tunnels) String() string  { return "intercepted CONNECT tunnels" }
