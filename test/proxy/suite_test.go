// Package proxy_test runs real clients through the recording proxy, in its
// sidecar configuration (the byte relay, the client's own bearer token
// forwarded unchanged), in front of a real kube-apiserver.
package proxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/proxy"
	"apisnoop.dev/kube-apisnoop/internal/record"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

// adminToken authenticates the test clients through the static token file,
// so that a token (not a client certificate, which a TLS-terminating proxy
// cannot forward) carries their identity, as in a pod.
const adminToken = "snoop-e2e-admin-token"

var (
	controlPlane  *testenv.ControlPlane
	testEnv       *envtest.Environment // controlPlane's, nil until the suite starts
	directConfig  *rest.Config         // token auth, straight to the API server
	proxiedConfig *rest.Config         // token auth, through the proxy
	directKube    string               // kubeconfig files for kubectl
	proxiedKube   string
	recorder      *record.Recorder
	events        *eventLog
	stopProxy     context.CancelFunc
	proxyDone     chan error
)

func TestProxy(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Recording proxy end-to-end suite")
}

var _ = BeforeSuite(func() {
	// Not suite.Start: the benchmarks, outside Ginkgo, start the same
	// control plane.
	suite.Configure()
	Expect(setUp(GinkgoT().TempDir())).To(Succeed())
})

var _ = AfterSuite(tearDown)

// startSuiteForBenchmark sets up what the specs use, for benchmarks, which
// run without the Ginkgo suite.
func startSuiteForBenchmark(b *testing.B) {
	ctrllog.SetLogger(logr.Discard())
	if err := setUp(b.TempDir()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tearDown)
}

// setUp starts the API server and the proxy in front of it.
func setUp(dir string) error {
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+`,snoop-admin,1000,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	var err error
	controlPlane, err = testenv.Start(testenv.WithAPIServerFlag("token-auth-file", tokens))
	if err != nil {
		return err
	}
	testEnv = controlPlane.Env
	cfg := controlPlane.Config
	directConfig = &rest.Config{Host: cfg.Host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData}}

	// The proxy: upstream verified with the cluster CA, no credentials of
	// its own, a recorder behind it.
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		return err
	}
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: cfg.CAData}})
	if err != nil {
		return err
	}
	cat, err := catalog.Load("1.37")
	if err != nil {
		return err
	}
	recorder = record.NewRecorder(match.New(cat), record.NewMetrics())
	events = &eventLog{}
	p, err := proxy.New(proxy.Config{
		Upstream:  upstream,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true},
		Observer:  tee{recorder, events},
		Identity:  record.Identity{Pod: "app-0", Namespace: "shop", ServiceAccount: "app"},
		ErrorLog:  log.New(io.Discard, "", 0),
	})
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var ctx context.Context
	ctx, stopProxy = context.WithCancel(context.Background())
	proxyDone = make(chan error, 1)
	// The relay, as the sidecar serves by default.
	go func() {
		proxyDone <- proxy.ServeRelay(ctx, ln, proxy.RelayConfig{
			Proxy: p, Upstream: upstream, UpstreamTLS: tlsCfg,
			Serving: &tls.Config{Certificates: []tls.Certificate{pair}},
		})
	}()

	proxiedConfig = &rest.Config{Host: "https://" + ln.Addr().String(), BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: certPEM}}
	if directKube, err = writeKubeconfig(dir, "direct", directConfig); err != nil {
		return err
	}
	proxiedKube, err = writeKubeconfig(dir, "proxied", proxiedConfig)
	return err
}

func tearDown() {
	if stopProxy != nil {
		stopProxy()
		<-proxyDone
		stopProxy = nil
	}
	if controlPlane != nil {
		_ = controlPlane.Stop()
		controlPlane, testEnv = nil, nil
	}
}

func writeKubeconfig(dir, name string, cfg *rest.Config) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	kc.CurrentContext = name
	path := filepath.Join(dir, name+".kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}
