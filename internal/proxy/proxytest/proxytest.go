// Package proxytest is test support shared by the tests of internal/proxy
// and internal/proxy/connect: an Observer that keeps events and waits for
// them, a throwaway CA, TLS upstreams on loopback and the streams and
// upgrades the proxies must pass through untouched.
//
// Only _test.go files import it, so no binary links it. It must not import
// internal/proxy: that package's in-package tests import this one.
package proxytest

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// WaitLimit guards waits that would otherwise hang a broken test; it is a
// deadlock guard, not a performance assertion.
const WaitLimit = 60 * time.Second

// MustURL parses raw or fails the test.
func MustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// NewUpstream starts a TLS test server that speaks HTTP/2 and HTTP/1.1, like
// the API server, and returns it with a pool that trusts it. It is closed
// when the test ends.
func NewUpstream(t testing.TB, h http.Handler) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return ts, pool
}
