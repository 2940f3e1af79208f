package connect

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
)

// startConnect serves a CONNECT proxy intercepting the host of apiServer
// and returns its address.
func startConnect(t testing.TB, apiServer string, handler http.Handler) (*url.URL, *proxytest.CA) {
	t.Helper()
	ca := proxytest.NewCA(t)
	cp, err := New(Config{Intercept: []string{proxytest.MustURL(t, apiServer).Host}, Handler: handler, CA: &ca.Cert})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, ca
}

func clientVia(proxyURL *url.URL, roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:              http.ProxyURL(proxyURL),
		TLSClientConfig:    &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}}
}

func TestConnectInterceptsOnlyTheAPIServer(t *testing.T) {
	events := proxytest.NewEventLog()
	recorder, apiServerURL := recordingProxyForAPIServer(t, events)
	proxyURL, ca := startConnect(t, apiServerURL, recorder)

	other, _ := proxytest.NewUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "other host")
	}))
	roots := ca.Pool.Clone()
	roots.AddCert(other.Certificate())
	client := clientVia(proxyURL, roots)
	defer client.CloseIdleConnections()

	resp, err := client.Get(apiServerURL + "/api/v1/namespaces/default")
	if err != nil {
		t.Fatalf("GET API server via CONNECT: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API server via CONNECT: %s %s", resp.Status, body)
	}
	if issuer := resp.TLS.PeerCertificates[0].Issuer.CommonName; issuer != ca.Cert.Leaf.Subject.CommonName {
		t.Errorf("API server certificate issued by %q, want the MITM CA", issuer)
	}
	t.Logf("intercepted connection spoke %s", resp.Proto)
	events.WaitFor(t, "namespace GET complete", proxytest.CompleteFor(http.MethodGet, "/api/v1/namespaces/default"))

	resp, err = client.Get(other.URL + "/elsewhere")
	if err != nil {
		t.Fatalf("GET other host via CONNECT: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "other host" {
		t.Fatalf("other host answered %q", body)
	}
	if !resp.TLS.PeerCertificates[0].Equal(other.Certificate()) {
		t.Errorf("other host was not tunnelled untouched: saw a certificate from %q", resp.TLS.PeerCertificates[0].Issuer)
	}
	for _, ev := range events.All() {
		if ev.Path == "/elsewhere" {
			t.Errorf("tunnelled request was observed: %+v", ev)
		}
	}
}

func TestConnectStreamsChunkByChunk(t *testing.T) {
	const chunks = 4
	next := make(chan struct{})
	upstream, roots := proxytest.NewUpstream(t, proxytest.ChunkedStream(chunks, next))
	events := proxytest.NewEventLog()
	recorder := recordingProxyFor(t, upstream, roots, events)
	proxyURL, ca := startConnect(t, upstream.URL, recorder)
	client := clientVia(proxyURL, ca.Pool)
	defer client.CloseIdleConnections()

	resp, err := client.Get(upstream.URL + "/api/v1/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	proxytest.ReadChunks(t, resp.Body, chunks, next)
	done := events.WaitFor(t, "watch complete", proxytest.CompleteFor(http.MethodGet, "/api/v1/pods"))
	if done.WatchEvents != chunks {
		t.Errorf("counted %d events, want %d", done.WatchEvents, chunks)
	}
}

// TestConnectPassesSPDYUpgrade is what goproxy's own MITM path cannot do.
func TestConnectPassesSPDYUpgrade(t *testing.T) {
	upstream, roots := proxytest.NewUpstream(t, proxytest.SPDYUpstream(t))
	events := proxytest.NewEventLog()
	recorder := recordingProxyFor(t, upstream, roots, events)
	proxyURL, ca := startConnect(t, upstream.URL, recorder)

	raw, err := net.Dial("tcp", proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	target := proxytest.MustURL(t, upstream.URL).Host
	fmt.Fprintf(raw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	rawReader := bufio.NewReader(raw)
	resp, err := http.ReadResponse(rawReader, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	conn := tls.Client(raw, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(conn, "POST /api/v1/namespaces/default/pods/p/attach HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n", target)
	br := bufio.NewReader(conn)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through CONNECT: %s", resp.Status)
	}
	proxytest.SPDYEcho(t, conn, br, "ping\n")
	conn.Close()
	done := events.WaitFor(t, "attach complete", proxytest.CompleteFor(http.MethodPost, "/api/v1/namespaces/default/pods/p/attach"))
	if !done.Upgraded {
		t.Errorf("event %+v not marked upgraded", done)
	}
}
