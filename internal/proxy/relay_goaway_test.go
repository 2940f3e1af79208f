package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/record"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// TestRelayRecordsEachRequestOnceUnderGoaway runs HTTP/2 clients through the
// relay against a kube-apiserver that sends GOAWAY after some of its
// answers (--goaway-chance, as clusters run behind load balancers): the
// requests it refuses are resent by the client on a new connection, and
// each request must be recorded exactly once, with its real status.
func TestRelayRecordsEachRequestOnceUnderGoaway(t *testing.T) {
	const token = "goaway-test-token"
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,goaway-admin,1001,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := testenv.StartForTest(t,
		testenv.WithAPIServerFlag("token-auth-file", tokens),
		testenv.WithAPIServerFlag("goaway-chance", "0.02"), // the most it allows
	)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cp.Config.CAData)
	upstream := cp.Config.Host
	if !strings.Contains(upstream, "://") {
		upstream = "https://" + upstream
	}
	events := proxytest.NewEventLog()
	metrics := record.NewMetrics()
	addr, ca, cancel, served := startRelayServing(t, Config{
		Upstream:  proxytest.MustURL(t, upstream),
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		Observer:  events,
	}, metrics)
	px := running(t, addr, ca, cancel, served)

	const workers, each = 8, 150
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				req, _ := http.NewRequest(http.MethodGet, px.url.String()+"/api/v1/namespaces/default", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := px.client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", sent.Load(), err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
					t.Errorf("HTTP/%d %d", resp.ProtoMajor, resp.StatusCode)
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	want := sent.Load()
	events.WaitFor(t, "every request", func(record.Event) bool { return completed(events) >= want })
	px.client.CloseIdleConnections()
	for _, ev := range events.All() {
		if ev.Stage == record.StageResponseComplete && ev.Status != http.StatusOK {
			t.Errorf("recorded %s %s with status %d", ev.Method, ev.Path, ev.Status)
		}
	}
	if got := completed(events); got != want {
		t.Errorf("recorded %d requests, the clients made %d", got, want)
	}
	// Each GOAWAY made the client open another connection.
	var out strings.Builder
	_, _ = metrics.WriteTo(&out)
	conns := 0
	for line := range strings.Lines(out.String()) {
		if rest, ok := strings.CutPrefix(line, `apisnoop_proxy_connections_total{served="relayed"} `); ok {
			conns, _ = strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	if conns < 2 {
		t.Errorf("%d connections relayed: the API server sent no GOAWAY, the test proves nothing", conns)
	}
	t.Logf("%d requests over %d connections", want, conns)
}

func completed(events *proxytest.EventLog) int64 {
	var n int64
	for _, ev := range events.All() {
		if ev.Stage == record.StageResponseComplete {
			n++
		}
	}
	return n
}
