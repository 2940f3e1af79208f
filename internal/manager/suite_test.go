package manager_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"

	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
)

const sidecarImage = "apisnoop:test"

var (
	ctx    context.Context
	cancel context.CancelFunc
	// controlPlane gives specs their namespaces.
	controlPlane *testenv.ControlPlane
	restCfg      *rest.Config
	admin        client.Client // uncached, as the test's own identity
	// operator is installed as config/ deploys it; the webhook
	// configuration calls its manager on 127.0.0.1.
	operator *testoperator.Operator
	// namespace and operatorUser are the operator's.
	namespace, operatorUser string
	// stopManager stops the running manager and waits for it.
	stopManager func()
	// suiteCleanups run after the suite.
	suiteCleanups []func()
)

func TestManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Manager Suite")
}

// The whole operator, as manager.New wires it, runs as its service account
// with exactly the RBAC that config/rbac generates, behind the webhook
// configuration config/default renders.
var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	controlPlane = suite.Start()
	restCfg, admin = controlPlane.Config, controlPlane.Client

	var err error
	operator, err = testoperator.Install(ctx, restCfg, admin, sidecarImage)
	Expect(err).NotTo(HaveOccurred())
	namespace, operatorUser = operator.Namespace, operator.User()
	// Catalog copies follow the cluster's API within seconds, not the
	// default half minute (cluster_test).
	operator.CatalogCheck = time.Second
	config := webhookConfiguration()
	Expect(config.Name).To(Equal(manager.DefaultWebhookConfiguration))
	for _, w := range config.Webhooks {
		Expect(w.ClientConfig.CABundle).To(BeEmpty(), "the test must not fill the caBundle")
	}
	stopManager = startManager()
})

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	for _, f := range suiteCleanups {
		f()
	}
	cancel() // suite.Start stops the control plane after this
})

// startManager runs the operator's manager and returns a function that
// stops it.
func startManager() (stop func()) {
	GinkgoHelper()
	stopMgr, err := operator.Start(ctx, ctrl.Options{
		// The suite restarts the manager in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	return func() { Expect(stopMgr()).To(Succeed()) }
}

func freePort() int {
	GinkgoHelper()
	port, err := testenv.FreePort()
	Expect(err).NotTo(HaveOccurred())
	return port
}
