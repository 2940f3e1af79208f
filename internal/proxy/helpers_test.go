package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/record"
)

// waitLimit guards waits that would otherwise hang a broken test; it is a
// deadlock guard, not a performance assertion.
const waitLimit = 60 * time.Second

// eventLog is an Observer that keeps copies of all events.
type eventLog struct {
	mu     sync.Mutex
	events []record.Event
	added  chan struct{} // signalled (non-blocking) on every event
}

func newEventLog() *eventLog { return &eventLog{added: make(chan struct{}, 1)} }

func (l *eventLog) Observe(ev *record.Event) {
	cp := *ev
	cp.Body = slices.Clone(ev.Body) // Observe must not keep ev.Body
	l.mu.Lock()
	l.events = append(l.events, cp)
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
}

func (l *eventLog) all() []record.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// waitFor waits until some event matches, and returns it.
func (l *eventLog) waitFor(t testing.TB, what string, match func(record.Event) bool) record.Event {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		for _, ev := range l.all() {
			if match(ev) {
				return ev
			}
		}
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no event %s among %d events", what, len(l.all()))
		}
	}
}

func completeFor(method, path string) func(record.Event) bool {
	return func(ev record.Event) bool {
		return ev.Stage == record.StageResponseComplete && ev.Method == method && ev.Path == path
	}
}

// testCA is a CA that signs serving certificates for loopback.
type testCA struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apisnoop test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &testCA{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}
}

// serving returns a certificate for 127.0.0.1, ::1 and localhost.
func (ca *testCA) serving(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "apisnoop test proxy"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert.Leaf, &key.PublicKey, ca.cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// runningProxy is a Proxy served by Serve on loopback.
type runningProxy struct {
	url    *url.URL
	ca     *testCA
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
func startServing(t testing.TB, h http.Handler) (addr string, ca *testCA, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	ca = newTestCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, ca.serving(t)) }()
	return ln.Addr().String(), ca, cancel, done
}

func serveHandler(t testing.TB, h http.Handler) *runningProxy {
	t.Helper()
	addr, ca, cancel, served := startServing(t, h)
	px := &runningProxy{
		url:    &url.URL{Scheme: "https", Host: addr},
		ca:     ca,
		client: &http.Client{Transport: clientTransport(ca.pool, true)},
		h1:     &http.Client{Transport: clientTransport(ca.pool, false)},
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

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
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

// chunkedStream writes chunks JSON lines, flushing each, and writes the next
// one only once next receives: the client must have read the previous one,
// so a buffering proxy deadlocks here.
func chunkedStream(chunks int, next <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := range chunks {
			fmt.Fprintf(w, "{\"chunk\":%d}\n", i)
			http.NewResponseController(w).Flush()
			if i == chunks-1 {
				return
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
}

// readChunks reads what chunkedStream writes, line by line, and lets it write
// the next line only after reading the previous one.
func readChunks(t testing.TB, body io.Reader, chunks int, next chan<- struct{}) {
	t.Helper()
	lines := bufio.NewReader(body)
	for i := range chunks {
		line, err := readLineGuarded(lines)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if want := fmt.Sprintf("{\"chunk\":%d}\n", i); line != want {
			t.Fatalf("chunk %d = %q, want %q", i, line, want)
		}
		if i < chunks-1 {
			next <- struct{}{}
		}
	}
}
