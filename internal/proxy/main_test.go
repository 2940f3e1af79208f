package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// apiServer is the package's one real control plane, started by the first
// test or benchmark that needs it and stopped by TestMain.
var apiServer testenv.Shared

// fixture is the package's view of apiServer, made once it started.
var fixture struct {
	once sync.Once
	f    *apiFixture
	err  error
}

// apiFixture is an authenticated view of the envtest API server.
type apiFixture struct {
	cp        *testenv.ControlPlane
	admin     *rest.Config // a system:masters user with a client certificate
	normal    http.RoundTripper
	upgrade   http.RoundTripper
	direct    *http.Client // straight to the API server, as admin
	clientset *kubernetes.Clientset
	upstream  string // https://127.0.0.1:port
}

func TestMain(m *testing.M) { apiServer.Main(m) }

// envtestServer returns the running API server, starting it if needed.
// Missing control-plane binaries fail the test, as in every suite.
func envtestServer(t testing.TB) *apiFixture {
	t.Helper()
	cp := apiServer.Get(t)
	fixture.once.Do(func() { fixture.f, fixture.err = newAPIFixture(cp) })
	if fixture.err != nil {
		t.Fatalf("envtest: %v", fixture.err)
	}
	return fixture.f
}

func newAPIFixture(cp *testenv.ControlPlane) (*apiFixture, error) {
	admin := cp.Config
	normal, upgrade, err := resttransport.For(admin)
	if err != nil {
		return nil, err
	}
	// Tests create objects in bulk: no client-side throttling.
	unthrottled := rest.CopyConfig(admin)
	unthrottled.QPS, unthrottled.Burst = 1000, 1000
	cs, err := kubernetes.NewForConfig(unthrottled)
	if err != nil {
		return nil, fmt.Errorf("build clientset: %w", err)
	}
	upstream := admin.Host
	if !strings.Contains(upstream, "://") {
		upstream = "https://" + upstream
	}
	return &apiFixture{
		cp:        cp,
		admin:     admin,
		normal:    normal,
		upgrade:   upgrade,
		direct:    &http.Client{Transport: normal},
		clientset: cs,
		upstream:  strings.TrimSuffix(upstream, "/"),
	}, nil
}

// proxyConfig is a proxy config in front of the envtest API server.
func (f *apiFixture) proxyConfig(t testing.TB, obs Config) Config {
	t.Helper()
	obs.Upstream = proxytest.MustURL(t, f.upstream)
	obs.Transport = f.normal
	obs.UpgradeTransport = f.upgrade
	return obs
}

// restConfigFor is a client-go config that reaches the API server through
// px, with no credentials of its own: the proxy's transport adds them.
func restConfigFor(px *runningProxy) *rest.Config {
	return &rest.Config{
		Host:            px.url.String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: pemCert(px.ca.Cert.Leaf)},
	}
}

// namespace creates a fresh namespace for one test.
func (f *apiFixture) namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := f.cp.Namespace(context.Background(), prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
