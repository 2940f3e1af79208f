package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"apisnoop.dev/kube-apisnoop/internal/auditscope"
	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

// The operator's namespace and service account in the suite.
const (
	operatorNamespace = "apisnoop-system"
	operatorUser      = "system:serviceaccount:apisnoop-system:apisnoop-controller-manager"
)

var (
	caStore    *issuer.CAStore
	proxyNames *issuer.ProxyNames

	// controlPlane gives specs their namespaces and kubectl its admin
	// kubeconfig.
	controlPlane *testenv.ControlPlane
	cfg          *rest.Config
	k8sClient    client.Client // uncached, for assertions
	ctx          context.Context
	cancel       context.CancelFunc
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	controlPlane = suite.Start()
	cfg, k8sClient = controlPlane.Config, controlPlane.Client
	ctx, cancel = context.WithCancel(context.Background())
	// Stops the manager before the control plane stops (suite.Start
	// stops it after every AfterSuite).
	DeferCleanup(cancel)

	scheme := k8sClient.Scheme()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	Expect((&SnoopSessionReconciler{
		Client:   mgr.GetClient(),
		Scheme:   scheme,
		Releases: &releases.Resolver{Discovery: disco},
		Recorder: mgr.GetEventRecorder("apisnoop-snoopsession"),
		// As the manager defaults it: audit sessions in its own namespace.
		AuditNamespaces: auditscope.Namespaces{operatorNamespace},
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
