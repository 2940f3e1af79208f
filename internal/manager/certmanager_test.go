package manager_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var _ = Describe("With a webhook certificate issued by someone else (cert-manager)", func() {
	It("gives target namespaces the issuer's CA beside the operator's, which sidecars verify the collector with", func() {
		By("a cert dir as cert-manager writes it: tls.crt, tls.key and ca.crt of its own CA")
		dir := GinkgoT().TempDir()
		issuerCA, err := signer.NewCA("cert-manager")
		Expect(err).NotTo(HaveOccurred())
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		certPEM, err := issuerCA.SignServing(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "webhook"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, PublicKey: &key.PublicKey}, time.Hour)
		Expect(err).NotTo(HaveOccurred())
		keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
		Expect(err).NotTo(HaveOccurred())
		for name, data := range map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, issuer.SecretKeyCA: issuerCA.CertPEM} {
			Expect(os.WriteFile(filepath.Join(dir, name), data, 0o600)).To(Succeed())
		}

		By("the manager restarted with --webhook-cert-dir")
		stopManager()
		operator.WebhookCertDir = dir
		stopManager = startManager()
		DeferCleanup(func() {
			stopManager()
			operator.WebhookCertDir = ""
			stopManager = startManager()
		})

		ns := targetNamespace(nil)
		session(ns, nil)
		operatorCA := &corev1.Secret{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: manager.CASecretName}, operatorCA)).To(Succeed())
		Eventually(func(g Gomega) {
			pair := &corev1.Secret{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.ProxyCertSecret}, pair)).To(Succeed())
			roots := x509.NewCertPool()
			g.Expect(roots.AppendCertsFromPEM(pair.Data[issuer.SecretKeyCA])).To(BeTrue())
			for _, ca := range [][]byte{issuerCA.CertPEM, operatorCA.Data[corev1.TLSCertKey]} {
				g.Expect(string(pair.Data[issuer.SecretKeyCA])).To(ContainSubstring(string(ca)))
			}
			// What the sidecar does with the file: verify the collector's
			// certificate.
			leaf, err := certutil.ParseCertsPEM(certPEM)
			g.Expect(err).NotTo(HaveOccurred())
			_, err = leaf[0].Verify(x509.VerifyOptions{Roots: roots})
			g.Expect(err).NotTo(HaveOccurred())
		}).Should(Succeed())
	})
})
