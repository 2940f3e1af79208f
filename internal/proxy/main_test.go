package proxy

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// apiServer is the package's one real control plane, started by the first
// test or benchmark that needs it and stopped by TestMain.
var apiServer struct {
	once    sync.Once
	fixture *apiFixture
	env     *envtest.Environment
	err     error
	skip    bool
}

// apiFixture is an authenticated view of the envtest API server.
type apiFixture struct {
	admin     *rest.Config // a system:masters user with a client certificate
	normal    http.RoundTripper
	upgrade   http.RoundTripper
	direct    *http.Client // straight to the API server, as admin
	clientset *kubernetes.Clientset
	upstream  string // https://127.0.0.1:port
}

func TestMain(m *testing.M) {
	code := m.Run()
	if apiServer.env != nil {
		if err := apiServer.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}
	os.Exit(code)
}

// envtestServer returns the running API server, starting it if needed. It
// skips the test when the control-plane binaries are not built.
func envtestServer(t testing.TB) *apiFixture {
	t.Helper()
	apiServer.once.Do(startAPIServer)
	if apiServer.skip {
		t.Skipf("envtest unavailable: %v", apiServer.err)
	}
	if apiServer.err != nil {
		t.Fatalf("envtest: %v", apiServer.err)
	}
	return apiServer.fixture
}

func startAPIServer() {
	env, err := testenv.New()
	if err != nil {
		apiServer.err, apiServer.skip = err, true
		return
	}
	if _, err := env.Start(); err != nil {
		apiServer.err = fmt.Errorf("start envtest: %w", err)
		return
	}
	apiServer.env = env
	user, err := env.AddUser(envtest.User{Name: "apisnoop-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		apiServer.err = fmt.Errorf("add user: %w", err)
		return
	}
	admin := user.Config()
	normal, upgrade, err := resttransport.For(admin)
	if err != nil {
		apiServer.err = err
		return
	}
	// Tests create objects in bulk: no client-side throttling.
	unthrottled := rest.CopyConfig(admin)
	unthrottled.QPS, unthrottled.Burst = 1000, 1000
	cs, err := kubernetes.NewForConfig(unthrottled)
	if err != nil {
		apiServer.err = fmt.Errorf("build clientset: %w", err)
		return
	}
	upstream := admin.Host
	if !strings.Contains(upstream, "://") {
		upstream = "https://" + upstream
	}
	apiServer.fixture = &apiFixture{
		admin:     admin,
		normal:    normal,
		upgrade:   upgrade,
		direct:    &http.Client{Transport: normal},
		clientset: cs,
		upstream:  strings.TrimSuffix(upstream, "/"),
	}
}

// proxyConfig is a proxy config in front of the envtest API server.
func (f *apiFixture) proxyConfig(t testing.TB, obs Config) Config {
	t.Helper()
	obs.Upstream = mustURL(t, f.upstream)
	obs.Transport = f.normal
	obs.UpgradeTransport = f.upgrade
	return obs
}

// restConfigFor is a client-go config that reaches the API server through
// px, with no credentials of its own: the proxy's transport adds them.
func restConfigFor(px *runningProxy) *rest.Config {
	return &rest.Config{
		Host:            px.url.String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: pemCert(px.ca.cert.Leaf)},
	}
}

// namespace creates a fresh namespace for one test.
func (f *apiFixture) namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := f.clientset.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}
