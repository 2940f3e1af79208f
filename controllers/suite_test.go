package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	apisnoopscheme "apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// The operator's namespace and service account in the suite.
const (
	operatorNamespace = "apisnoop-system"
	operatorUser      = "system:serviceaccount:apisnoop-system:apisnoop-controller-manager"
)

var (
	caStore    *issuer.CAStore
	proxyNames *issuer.ProxyNames

	cfg       *rest.Config
	k8sClient client.Client // uncached, for assertions
	testEnv   *envtest.Environment
	ctx       context.Context
	cancel    context.CancelFunc
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())

	var err error
	testEnv, err = testenv.New()
	Expect(err).NotTo(HaveOccurred())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	scheme := apisnoopscheme.New()
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	Expect((&SnoopSessionReconciler{
		Client:   mgr.GetClient(),
		Scheme:   scheme,
		Releases: &releases.Resolver{Discovery: disco},
		Recorder: mgr.GetEventRecorder("apisnoop-snoopsession"),
	}).SetupWithManager(mgr)).To(Succeed())

	// The signer, approving requests from the operator's service account
	// only, with its CA in the operator's namespace.
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())
	caStore = &issuer.CAStore{Client: k8sClient, Secret: types.NamespacedName{Namespace: operatorNamespace, Name: "apisnoop-ca"}}
	proxyNames = &issuer.ProxyNames{Client: k8sClient, ClusterDomain: "cluster.local"}
	Expect((&CSRSignerReconciler{
		Client:    mgr.GetClient(),
		CA:        caStore.Get,
		Requester: operatorUser,
		Names:     proxyNames,
	}).SetupWithManager(mgr)).To(Succeed())

	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	cancel()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
