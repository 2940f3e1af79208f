package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

var (
	ctx    context.Context
	cancel context.CancelFunc
	// controlPlane gives specs their namespaces, and the webhook server
	// its address and certificates.
	controlPlane *testenv.ControlPlane
	k8sClient    client.Client // uncached, for the test's own reads and writes
	// cached is what the injector reads, as in the manager: a cache with
	// the session index, started for the suite.
	cached client.Reader
)

func TestWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Pod webhook suite")
}

// The API server calls the generated MutatingWebhookConfiguration, which
// envtest points at a webhook server of the test's own.
var _ = BeforeSuite(func() {
	controlPlane = suite.Start(testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml")))
	k8sClient = controlPlane.Client
	ctx, cancel = context.WithCancel(context.Background())
	// Stops the cache before the control plane stops (suite.Start stops
	// it after every AfterSuite).
	DeferCleanup(cancel)

	c, err := cache.New(controlPlane.Config, cache.Options{Scheme: k8sClient.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(targets.IndexSessions(ctx, c)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(c.Start(ctx)).To(Succeed())
	}()
	Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
	cached = c
})

// startWebhookServer serves the injector where the configuration points and
// returns a function that stops it.
func startWebhookServer() (stop func()) {
	GinkgoHelper()
	o := controlPlane.Env.WebhookInstallOptions
	server := webhook.NewServer(webhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir})
	server.Register(Path, &admission.Webhook{Handler: &PodInjector{
		Client:  cached,
		Decoder: admission.NewDecoder(k8sClient.Scheme()),
		Image:   "apisnoop:test",
		Skip:    []string{"kube-system", "apisnoop-system"},
	}})
	serverCtx, stopServer := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(server.Start(serverCtx)).To(Succeed())
	}()
	addr := net.JoinHostPort(o.LocalServingHost, fmt.Sprint(o.LocalServingPort))
	Eventually(func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only probing that it listens
		if err != nil {
			return err
		}
		return conn.Close()
	}).Should(Succeed())
	return func() { stopServer(); <-done }
}
