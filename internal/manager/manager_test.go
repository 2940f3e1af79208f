package manager_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"apisnoop.dev/kube-apisnoop/controllers"
	"apisnoop.dev/kube-apisnoop/internal/certs"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

const (
	namespace      = "apisnoop-system"
	serviceAccount = "apisnoop-controller-manager"
	operatorUser   = "system:serviceaccount:" + namespace + ":" + serviceAccount
)

var (
	ctx     context.Context
	cancel  context.CancelFunc
	testEnv *envtest.Environment
	admin   client.Client
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

	asOperator := rest.CopyConfig(cfg)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: operatorUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}}
	mgr, err := manager.New(asOperator, manager.Config{Namespace: namespace}, ctrl.Options{
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
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

var _ = Describe("The operator's proxy certificate", func() {
	It("is issued through a CertificateSigningRequest it approves, kept in a Secret, and serves TLS", func() {
		secret := &corev1.Secret{}
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: manager.ProxyCertSecretName}, secret)
		}).Should(Succeed())
		Expect(secret.Data).To(HaveKey(corev1.TLSCertKey))
		Expect(secret.Data).To(HaveKey(corev1.TLSPrivateKeyKey))
		Expect(secret.Data).To(HaveKey(controllers.SecretKeyCA))

		By("the request: from the operator, for the proxy signer, approved by the operator's policy")
		csrs := &certificatesv1.CertificateSigningRequestList{}
		Expect(admin.List(ctx, csrs)).To(Succeed())
		var ours []certificatesv1.CertificateSigningRequest
		for _, c := range csrs.Items {
			if c.Spec.SignerName == signer.ProxySignerName {
				ours = append(ours, c)
			}
		}
		Expect(ours).To(HaveLen(1))
		Expect(ours[0].Spec.Username).To(Equal(operatorUser))
		Expect(ours[0].Status.Conditions).To(ContainElement(HaveField("Reason", controllers.ReasonPolicyApproved)))
		Expect(ours[0].Status.Certificate).To(Equal(secret.Data[corev1.TLSCertKey]))

		By("the pair: served by the sidecar's certificate loader, trusted through ca.crt for the API server's names")
		dir := GinkgoT().TempDir()
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		Expect(os.WriteFile(certFile, secret.Data[corev1.TLSCertKey], 0o600)).To(Succeed())
		Expect(os.WriteFile(keyFile, secret.Data[corev1.TLSPrivateKeyKey], 0o600)).To(Succeed())
		serving, err := certs.NewServingFiles(certFile, keyFile)
		Expect(err).NotTo(HaveOccurred())
		ln, err := tls.Listen("tcp", "127.0.0.1:0", serving.TLSConfig())
		Expect(err).NotTo(HaveOccurred())
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				_ = conn.(*tls.Conn).Handshake()
				conn.Close()
			}
		}()
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(secret.Data[controllers.SecretKeyCA])).To(BeTrue())
		kubernetesSvc := &corev1.Service{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, kubernetesSvc)).To(Succeed())
		for _, name := range []string{"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", kubernetesSvc.Spec.ClusterIP} {
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
			Expect(err).NotTo(HaveOccurred(), name)
			conn.Close()
		}
		_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "api.example.com"})
		Expect(err).To(HaveOccurred())
	})
})
