package proxy

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
)

// The request the upstream receives carries the client's Accept-Encoding
// exactly (none when it sent none), even through a transport that would
// ask for gzip on its own, and the client gets the upstream's bytes,
// compressed exactly when it asked.
func TestNothingAddedUpstream(t *testing.T) { onEachPath(t, testNothingAddedUpstream) }

func testNothingAddedUpstream(t *testing.T, start starter) {
	plain := []byte(strings.Repeat(`{"kind":"ConfigMap","data":{"k":"v"}},`, 200))
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(plain)
	_ = zw.Close()

	var mu sync.Mutex
	var seen []http.Header
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(zipped.Bytes())
			return
		}
		_, _ = w.Write(plain)
	}))
	t.Cleanup(upstream.Close)
	// What a caller would naively pass: Go's default transparent
	// compression left on.
	naive := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: upstreamPool(upstream)}, ForceAttemptHTTP2: true}
	px := start(t, Config{Upstream: proxytest.MustURL(t, upstream.URL), Transport: naive})

	for _, tc := range []struct {
		name, acceptEncoding string
		want                 []byte
		wantEncoding         string
	}{
		{name: "gzip", acceptEncoding: "gzip", want: zipped.Bytes(), wantEncoding: "gzip"},
		{name: "none", want: plain},
		{name: "identity", acceptEncoding: "identity", want: plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			req, err := http.NewRequest(http.MethodGet, px.url.String()+"/api/v1/namespaces/default/configmaps", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			req.Header.Set("User-Agent", "compression-test")
			if tc.acceptEncoding != "" {
				req.Header.Set("Accept-Encoding", tc.acceptEncoding)
			}
			sent := req.Header.Clone()
			// The client's own transport adds nothing either.
			resp, err := px.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, tc.want) || resp.Header.Get("Content-Encoding") != tc.wantEncoding {
				t.Errorf("the client got %d bytes with Content-Encoding %q, want the upstream's %d bytes with %q",
					len(body), resp.Header.Get("Content-Encoding"), len(tc.want), tc.wantEncoding)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 1 {
				t.Fatalf("the upstream got %d requests, want 1", len(seen))
			}
			got := seen[0]
			for name := range got {
				if name == "X-Forwarded-For" || name == "X-Forwarded-Host" || name == "X-Forwarded-Proto" {
					t.Errorf("the upstream got %s, which the client did not send", name)
				}
			}
			for _, name := range []string{"Accept-Encoding", "Accept", "User-Agent"} {
				if g, w := got.Values(name), sent.Values(name); strings.Join(g, ",") != strings.Join(w, ",") {
					t.Errorf("%s upstream %q, the client sent %q", name, g, w)
				}
			}
		})
	}
}

func upstreamPool(s *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}
