package manager_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var _ = Describe("With a webhook certificate issued by someone else (cert-manager)", func() {
	It("gives target namespaces the issuer's CA beside the operator's, which sidecars verify the collector with", func() {
		By("a cert dir as cert-manager writes it: tls.crt, tls.key and ca.crt of its own CA")
		dir := GinkgoT().TempDir()
		issuerCA := proxytest.NewCA(GinkgoTB())
		pair := issuerCA.Serving(GinkgoTB())
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]})
		keyPEM, err := keyutil.MarshalPrivateKeyToPEM(pair.PrivateKey)
		Expect(err).NotTo(HaveOccurred())
		issuerCAPEM := issuerCA.PEM()
		for name, data := range map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, issuer.SecretKeyCA: issuerCAPEM} {
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
		operatorCA := caPEM()
		Eventually(func(g Gomega) {
			copied := &corev1.Secret{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.ProxyCertSecret}, copied)).To(Succeed())
			roots := x509.NewCertPool()
			g.Expect(roots.AppendCertsFromPEM(copied.Data[issuer.SecretKeyCA])).To(BeTrue())
			for _, ca := range [][]byte{issuerCAPEM, operatorCA} {
				g.Expect(string(copied.Data[issuer.SecretKeyCA])).To(ContainSubstring(string(ca)))
			}
			// What the sidecar does with the file: verify the collector's
			// certificate.
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			g.Expect(err).NotTo(HaveOccurred())
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots})
			g.Expect(err).NotTo(HaveOccurred())
		}).Should(Succeed())
	})
})
