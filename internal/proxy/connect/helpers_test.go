package connect

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/proxy"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/record"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// waitLimit guards waits that would otherwise hang a broken test; it is a
// deadlock guard, not a performance assertion.
const waitLimit = 60 * time.Second

// apiServer is the package's real control plane, started by the first test
// that needs it and stopped by TestMain.
var apiServer testenv.Shared

func TestMain(m *testing.M) { apiServer.Main(m) }

// recordingProxyForAPIServer is the recording reverse proxy in front of the
// envtest API server, with the admin's credentials, and the server's URL.
func recordingProxyForAPIServer(t testing.TB, obs record.Observer) (*proxy.Proxy, string) {
	t.Helper()
	cp := apiServer.Get(t)
	normal, upgrade, err := resttransport.For(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	upstream := cp.Config.Host
	if !strings.Contains(upstream, "://") {
		upstream = "https://" + upstream
	}
	upstream = strings.TrimSuffix(upstream, "/")
	p, err := proxy.New(proxy.Config{Upstream: mustURL(t, upstream), Transport: normal, UpgradeTransport: upgrade, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return p, upstream
}

// recordingProxyFor is the recording reverse proxy in front of an httptest
// upstream.
func recordingProxyFor(t testing.TB, upstream *httptest.Server, roots *x509.CertPool, obs record.Observer) *proxy.Proxy {
	t.Helper()
	p, err := proxy.New(proxy.Config{
		Upstream:  mustURL(t, upstream.URL),
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true},
		Observer:  obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newUpstream(t testing.TB, h http.Handler) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return ts, pool
}

// eventLog is an Observer that keeps copies of all events.
type eventLog struct {
	mu     sync.Mutex
	events []record.Event
	added  chan struct{} // signalled (non-blocking) on every event
}

func newEventLog() *eventLog { return &eventLog{added: make(chan struct{}, 1)} }

func (l *eventLog) Observe(ev *record.Event) {
	cp := *ev
	cp.Body = slices.Clone(ev.Body)
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

// waitFor waits until some event is the completion of method on path, and
// returns it.
func (l *eventLog) waitFor(t testing.TB, method, path string) record.Event {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		for _, ev := range l.all() {
			if ev.Stage == record.StageResponseComplete && ev.Method == method && ev.Path == path {
				return ev
			}
		}
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no completed %s %s among %d events", method, path, len(l.all()))
		}
	}
}

// testCA is the CA the CONNECT proxy signs intercepted hosts' certificates
// with.
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

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// chunkedStream writes chunks JSON lines, flushing each, and writes the next
// one only once next receives: the client must have read the previous one,
// so a buffering proxy deadlocks here.
func chunkedStream(chunks int, next <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := range chunks {
			fmt.Fprintf(w, "{\"chunk\":%d}\n", i)
			_ = http.NewResponseController(w).Flush()
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

// readChunks reads what chunkedStream writes, line by line, and lets it
// write the next line only after reading the previous one.
func readChunks(t testing.TB, body *bufio.Reader, chunks int, next chan<- struct{}) {
	t.Helper()
	for i := range chunks {
		line, err := readLineGuarded(body)
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

// readLineGuarded reads a line, giving up after waitLimit.
func readLineGuarded(r *bufio.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		got <- result{line, err}
	}()
	select {
	case res := <-got:
		return res.line, res.err
	case <-time.After(waitLimit):
		return "", fmt.Errorf("nothing arrived: the proxy buffers the stream")
	}
}

// spdyUpstream answers an SPDY/3.1 upgrade over HTTP/1.1 with a greeting,
// then echoes every line.
func spdyUpstream(t testing.TB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "SPDY/3.1" || r.ProtoMajor != 1 {
			http.Error(w, "want an SPDY/3.1 upgrade over HTTP/1.1, got "+r.Proto, http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\ngreeting\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo:" + line)
			_ = brw.Flush()
		}
	})
}
