package manager_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

const (
	sidecarImage   = "apisnoop:test"
	namespace      = "apisnoop-system"
	serviceAccount = "apisnoop-controller-manager"
	operatorUser   = "system:serviceaccount:" + namespace + ":" + serviceAccount
)

var (
	ctx     context.Context
	cancel  context.CancelFunc
	testEnv *envtest.Environment
	restCfg *rest.Config
	admin   client.Client // uncached, as the test's own identity
	// webhookPort is where the manager serves the pod webhook; the rendered
	// webhook configuration calls it at https://127.0.0.1:webhookPort.
	webhookPort int
	// stopManager stops the running manager and waits for it.
	stopManager func()
)

func TestManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Manager Suite")
}

// The whole operator, as manager.New wires it, runs as its service account
// with exactly the RBAC that config/rbac generates.
var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())

	var err error
	testEnv, err = testenv.New()
	Expect(err).NotTo(HaveOccurred())
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	admin, err = client.New(cfg, client.Options{Scheme: scheme.New()})
	Expect(err).NotTo(HaveOccurred())

	Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: namespace}})).To(Succeed())
	applyGeneratedRBAC()

	restCfg = cfg
	webhookPort = freePort()
	installWebhookConfiguration()
	stopManager = startManager()
})

// startManager runs the whole operator, as manager.New wires it, as its
// service account, serving the webhook on loopback (a manager run outside
// the cluster), and returns a function that stops it.
func startManager() (stop func()) {
	GinkgoHelper()
	asOperator := rest.CopyConfig(restCfg)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: operatorUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}}
	mgr, err := manager.New(asOperator, manager.Config{Namespace: namespace, Webhook: manager.WebhookConfig{
		Host: "127.0.0.1", Port: webhookPort, ExtraNames: []string{"127.0.0.1"}, SidecarImage: sidecarImage,
	}}, ctrl.Options{
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		// The suite restarts the manager in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	mgrCtx, stopMgr := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
	return func() { stopMgr(); <-done }
}

// installWebhookConfiguration creates the webhook configuration config/
// renders, pointed at the manager on loopback, with the caBundle empty for
// the operator to fill.
func installWebhookConfiguration() {
	GinkgoHelper()
	config, err := testenv.InstallWebhookConfiguration(ctx, admin, fmt.Sprintf("https://127.0.0.1:%d", webhookPort))
	Expect(err).NotTo(HaveOccurred())
	Expect(config.Name).To(Equal(manager.DefaultWebhookConfiguration))
	for _, w := range config.Webhooks {
		Expect(w.ClientConfig.CABundle).To(BeEmpty())
	}
}

func freePort() int {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	cancel()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// applyGeneratedRBAC creates config/rbac/role.yaml's roles and binds them to
// the operator's service account, as config/rbac/role_binding.yaml does.
func applyGeneratedRBAC() {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: namespace}}
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else {
			Expect(err).NotTo(HaveOccurred())
		}
		if obj.GetNamespace() != "" {
			obj.SetNamespace(namespace)
		}
		Expect(admin.Create(ctx, obj)).To(Succeed())
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: obj.GetKind(), Name: obj.GetName()}
		meta := metav1.ObjectMeta{Name: "apisnoop-" + obj.GetName(), Namespace: obj.GetNamespace()}
		if obj.GetKind() == "ClusterRole" {
			Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subject})).To(Succeed())
		} else {
			Expect(admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subject})).To(Succeed())
		}
	}
}
