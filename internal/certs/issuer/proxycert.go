// Package issuer keeps the operator's certificates: its CA in a Secret, the
// proxies' serving pair issued through a CertificateSigningRequest to the
// operator's own signer, the webhook's serving pair signed with the CA, and
// the trust bundle injected pods verify the proxy with. It talks to the API
// server; the sidecar never links it.
package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// ProxyNames looks up the names a proxy certificate carries and the signer
// allows: the kubernetes Service's ClusterIP and DNS names, and loopback.
type ProxyNames struct {
	// Client reads one Service; as for CAStore, not from a cache.
	Client        client.Client
	ClusterDomain string
}

// Get reads the kubernetes Service's address.
func (n *ProxyNames) Get(ctx context.Context) (dnsNames []string, ips []net.IP, err error) {
	svc := &corev1.Service{}
	if err := n.Client.Get(ctx, types.NamespacedName{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}, svc); err != nil {
		return nil, nil, fmt.Errorf("get the kubernetes service: %w", err)
	}
	var serviceIPs []net.IP
	for _, s := range svc.Spec.ClusterIPs { // the first is spec.clusterIP
		if ip := net.ParseIP(s); ip != nil {
			serviceIPs = append(serviceIPs, ip)
		}
	}
	dnsNames, ips = signer.ProxyNames(n.ClusterDomain, serviceIPs...)
	return dnsNames, ips, nil
}

// DefaultProxyCertValidity is how long a proxy serving certificate lives
// when the request does not ask for less. The issuer renews at two thirds.
const DefaultProxyCertValidity = 30 * 24 * time.Hour

// ProxyCertIssuer keeps the proxies' serving certificate in a Secret of the
// operator's namespace. It asks for one through a CertificateSigningRequest
// for signer.ProxySignerName (the API server garbage-collects requests after
// about an hour, so the pair is kept in the Secret), and renews it at two
// thirds of its life. A controller calls Ensure on the Secret's events and
// when Ensure says the pair is due.
type ProxyCertIssuer struct {
	// Client should be uncached, as CAStore's.
	Client client.Client
	// Requests are made with this clientset, as the operator's service
	// account: the signer approves only that requester.
	Requests kubernetes.Interface
	// CA gives the CA certificate stored beside the pair (ca.crt).
	CA     func(ctx context.Context) (*signer.CA, error)
	Secret types.NamespacedName
	Names  *ProxyNames
	// Validity asked for; zero means DefaultProxyCertValidity.
	Validity time.Duration
}

// Ensure issues a certificate when the Secret has none that is good, and
// says when to look again and whether it issued one.
func (i *ProxyCertIssuer) Ensure(ctx context.Context) (next time.Time, issued bool, err error) {
	secret := &corev1.Secret{}
	err = i.Client.Get(ctx, i.Secret, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, false, fmt.Errorf("get proxy certificate secret: %w", err)
	}
	exists := err == nil
	dnsNames, ips, err := i.Names.Get(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	if exists {
		if renewAt, ok := currentPair(secret, dnsNames, ips); ok && time.Now().Before(renewAt) {
			return renewAt, false, nil
		}
	}

	certPEM, keyPEM, err := i.request(ctx, dnsNames, ips)
	if err != nil {
		return time.Time{}, false, err
	}
	leaf, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("parse issued certificate: %w", err)
	}
	ca, err := i.CA(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("load CA: %w", err)
	}
	secret.Name, secret.Namespace = i.Secret.Name, i.Secret.Namespace
	secret.Type = corev1.SecretTypeTLS
	MarkManaged(secret)
	secret.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, SecretKeyCA: ca.CertPEM}
	if exists {
		err = i.Client.Update(ctx, secret)
	} else {
		err = i.Client.Create(ctx, secret)
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store proxy certificate: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Issued proxy serving certificate", "secret", i.Secret, "notAfter", leaf[0].NotAfter, "dnsNames", dnsNames, "ips", ips)
	return renewalTime(leaf[0]), true, nil
}

// request makes a key and a CertificateSigningRequest and waits for the
// signer's certificate.
func (i *ProxyCertIssuer) request(ctx context.Context, dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate proxy key: %w", err)
	}
	csrPEM, err := certutil.MakeCSR(key, &pkix.Name{CommonName: "apisnoop-proxy"}, dnsNames, ips)
	if err != nil {
		return nil, nil, fmt.Errorf("make certificate request: %w", err)
	}
	validity := i.Validity
	if validity == 0 {
		validity = DefaultProxyCertValidity
	}
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	name, uid, err := csr.RequestCertificateWithContext(ctx, i.Requests, csrPEM, "", signer.ProxySignerName, &validity, usages, key)
	if err != nil {
		return nil, nil, fmt.Errorf("request proxy certificate: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	certPEM, err = csr.WaitForCertificate(waitCtx, i.Requests, name, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("wait for certificate of request %s: %w", name, err)
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode proxy key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// currentPair reports whether the Secret holds a pair that loads and names
// exactly dnsNames and ips, and when it is due for renewal.
func currentPair(secret *corev1.Secret, dnsNames []string, ips []net.IP) (renewAt time.Time, ok bool) {
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil || len(secret.Data[SecretKeyCA]) == 0 {
		return time.Time{}, false
	}
	return renewalTime(pair.Leaf), sameNames(pair.Leaf, dnsNames, ips)
}

// renewalTime is two thirds into a certificate's life: early enough that a
// kubelet's slow Secret update and a few failed attempts still end before
// it expires.
func renewalTime(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

func sameNames(c *x509.Certificate, dnsNames []string, ips []net.IP) bool {
	return slices.Equal(c.DNSNames, dnsNames) && slices.EqualFunc(c.IPAddresses, ips, net.IP.Equal)
}
