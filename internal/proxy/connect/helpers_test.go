package connect

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy"
	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/record"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

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
	p, err := proxy.New(proxy.Config{Upstream: proxytest.MustURL(t, upstream), Transport: normal, UpgradeTransport: upgrade, Observer: obs})
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
		Upstream:  proxytest.MustURL(t, upstream.URL),
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true},
		Observer:  obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
