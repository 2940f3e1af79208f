package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// asOperator is a client that acts as the operator's service account, which
// may create certificate requests (and nothing else here).
func asOperator() client.Client {
	GinkgoHelper()
	grantCSRCreate(operatorUser)
	c, err := client.New(impersonating(operatorUser), client.Options{Scheme: k8sClient.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func impersonating(user string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	return c
}

// grantCSRCreate lets user create and read certificate requests.
func grantCSRCreate(user string) {
	GinkgoHelper()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-csr-requester"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"},
			Verbs: []string{"create", "get", "list", "watch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-csr-requester"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := k8sClient.Create(ctx, o); err != nil {
			Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
		}
	}
	// The API server's authorizer learns of the binding from its informers:
	// wait until it allows the request, or the first create may be refused.
	Eventually(func(g Gomega) {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: "certificates.k8s.io", Resource: "certificatesigningrequests", Verb: "create"},
		}}
		g.Expect(k8sClient.Create(ctx, review)).To(Succeed())
		g.Expect(review.Status.Allowed).To(BeTrue(), review.Status.Reason)
	}).Should(Succeed())
}

// newCSR creates a certificate request with c for the given names.
func newCSR(c client.Client, signerName string, dnsNames []string, ips []net.IP, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	req, err := certutil.MakeCSR(key, &pkix.Name{CommonName: "apisnoop-proxy"}, dnsNames, ips)
	Expect(err).NotTo(HaveOccurred())
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "proxy-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: signerName, Usages: usages},
	}
	Expect(c.Create(ctx, csr)).To(Succeed())
	DeferCleanup(func() { _ = k8sClient.Delete(ctx, csr) })
	return csr
}

func getCSR(csr *certificatesv1.CertificateSigningRequest) func(Gomega) *certificatesv1.CertificateSigningRequest {
	return func(g Gomega) *certificatesv1.CertificateSigningRequest {
		got := &certificatesv1.CertificateSigningRequest{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(csr), got)).To(Succeed())
		return got
	}
}

// decision is "Type/Reason: message" of the first condition, or "".
func decision(csr *certificatesv1.CertificateSigningRequest) string {
	if len(csr.Status.Conditions) == 0 {
		return ""
	}
	c := csr.Status.Conditions[0]
	return string(c.Type) + "/" + c.Reason + ": " + c.Message
}

func kubernetesServiceIP() net.IP {
	GinkgoHelper()
	svc := &corev1.Service{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: "kubernetes"}, svc)).To(Succeed())
	return net.ParseIP(svc.Spec.ClusterIP)
}

var _ = Describe("The proxy certificate signer", func() {
	It("approves and signs a serving certificate the operator asks for", func() {
		serviceIP := kubernetesServiceIP()
		csr := newCSR(asOperator(), signer.ProxySignerName,
			[]string{"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
			[]net.IP{serviceIP, net.ParseIP("127.0.0.1")})

		Eventually(getCSR(csr)).Should(WithTransform(func(c *certificatesv1.CertificateSigningRequest) []byte {
			return c.Status.Certificate
		}, Not(BeEmpty())))
		got := getCSR(csr)(Default)
		Expect(decision(got)).To(HavePrefix("Approved/" + ReasonPolicyApproved))
		Expect(got.Spec.Username).To(Equal(operatorUser))

		ca, err := caStore.Get(ctx)
		Expect(err).NotTo(HaveOccurred())
		leaf, err := certutil.ParseCertsPEM(got.Status.Certificate)
		Expect(err).NotTo(HaveOccurred())
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		for _, name := range []string{"kubernetes.default.svc", "localhost", serviceIP.String(), "127.0.0.1"} {
			_, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			Expect(err).NotTo(HaveOccurred(), name)
		}
		Expect(leaf[0].NotAfter).To(BeTemporally("~", time.Now().Add(issuer.DefaultProxyCertValidity), time.Hour))
	})

	DescribeTable("denies, saying why,",
		func(asSomeoneElse bool, dnsNames []string, usages []certificatesv1.KeyUsage, want string) {
			requester := asOperator()
			if asSomeoneElse {
				requester = k8sClient
			}
			csr := newCSR(requester, signer.ProxySignerName, dnsNames, nil, usages...)
			Eventually(getCSR(csr)).Should(WithTransform(decision, And(HavePrefix("Denied/"+ReasonPolicyDenied), ContainSubstring(want))))
			Expect(getCSR(csr)(Default).Status.Certificate).To(BeEmpty())
		},
		Entry("a request from anyone but the operator", true, []string{"localhost"}, nil, "only \""+operatorUser+"\" may request"),
		Entry("a name that is not the API server's", false, []string{"localhost", "api.example.com"}, nil, `DNS name "api.example.com" is not allowed`),
		Entry("a client certificate", false, []string{"localhost"},
			[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth}, `usage "client auth" is not allowed`),
	)

	It("leaves requests for other signers alone", func() {
		csr := newCSR(asOperator(), "example.com/other", []string{"localhost"}, nil)
		Consistently(getCSR(csr), 2*time.Second).Should(WithTransform(decision, BeEmpty()))
	})

	It("issues the proxy's pair into a Secret and renews it when its names change", func() {
		grantCSRCreate(operatorUser)
		requests, err := kubernetes.NewForConfig(impersonating(operatorUser))
		Expect(err).NotTo(HaveOccurred())
		proxyIssuer := &issuer.ProxyCertIssuer{
			Client: k8sClient, Requests: requests, CA: caStore.Get, Names: proxyNames,
			Secret: client.ObjectKey{Namespace: operatorNamespace, Name: "test-proxy-tls"},
		}
		DeferCleanup(func() {
			_ = k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "test-proxy-tls"}})
		})
		next, issued, err := proxyIssuer.Ensure(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(issued).To(BeTrue())
		Expect(next).To(BeTemporally("~", time.Now().Add(issuer.DefaultProxyCertValidity*2/3), time.Hour))

		secret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, proxyIssuer.Secret, secret)).To(Succeed())
		Expect(secret.Type).To(Equal(corev1.SecretTypeTLS))
		ca, err := caStore.Get(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(secret.Data[issuer.SecretKeyCA]).To(Equal(ca.CertPEM))
		first := secret.Data[corev1.TLSCertKey]

		By("keeping a pair that is current")
		_, issued, err = proxyIssuer.Ensure(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(issued).To(BeFalse())
		Expect(k8sClient.Get(ctx, proxyIssuer.Secret, secret)).To(Succeed())
		Expect(secret.Data[corev1.TLSCertKey]).To(Equal(first))

		By("issuing again for new names")
		proxyNames.ClusterDomain = "example.internal" // shared with the signer
		DeferCleanup(func() { proxyNames.ClusterDomain = "cluster.local" })
		_, _, err = proxyIssuer.Ensure(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Get(ctx, proxyIssuer.Secret, secret)).To(Succeed())
		leaf, err := certutil.ParseCertsPEM(secret.Data[corev1.TLSCertKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(leaf[0].DNSNames).To(ContainElement("kubernetes.default.svc.example.internal"))
	})
})
