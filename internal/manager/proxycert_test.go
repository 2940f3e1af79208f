package manager_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/controllers"
	"apisnoop.dev/kube-apisnoop/internal/certs"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
	"apisnoop.dev/kube-apisnoop/internal/manager"
)

var _ = Describe("The operator's proxy certificate", func() {
	It("is issued through a CertificateSigningRequest it approves, kept in a Secret, and serves TLS", func() {
		secret := &corev1.Secret{}
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: manager.ProxyCertSecretName}, secret)
		}).Should(Succeed())
		Expect(secret.Data).To(HaveKey(corev1.TLSCertKey))
		Expect(secret.Data).To(HaveKey(corev1.TLSPrivateKeyKey))
		Expect(secret.Data).To(HaveKey(issuer.SecretKeyCA))

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
		addr := handshakes(serving.TLSConfig())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(secret.Data[issuer.SecretKeyCA])).To(BeTrue())
		kubernetesSvc := &corev1.Service{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, kubernetesSvc)).To(Succeed())
		for _, name := range []string{"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", kubernetesSvc.Spec.ClusterIP} {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: name})
			Expect(err).NotTo(HaveOccurred(), name)
			conn.Close()
		}
		_, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "api.example.com"})
		Expect(err).To(HaveOccurred())
	})
})
