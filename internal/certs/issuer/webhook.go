package issuer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// DefaultWebhookCertValidity is how long the webhook's serving certificate
// lives; it is renewed at two thirds, and only the API server (which trusts
// the CA, not the leaf) ever sees it.
const DefaultWebhookCertValidity = 90 * 24 * time.Hour

// WebhookNames are the names the API server dials the webhook by: the
// Service's DNS names, and extra names or addresses (a manager run outside
// the cluster is reached by a URL such as https://127.0.0.1:9443).
func WebhookNames(service, namespace, clusterDomain string, extra ...string) (dnsNames []string, ips []net.IP) {
	dnsNames = []string{service, service + "." + namespace, service + "." + namespace + ".svc", service + "." + namespace + ".svc." + clusterDomain}
	for _, name := range extra {
		if ip := net.ParseIP(name); ip != nil {
			ips = append(ips, ip)
		} else if name != "" {
			dnsNames = append(dnsNames, name)
		}
	}
	return dnsNames, ips
}

// WebhookCert keeps the webhook's serving pair in a Secret of the operator's
// namespace, signed directly with the operator's CA: the operator is the
// CA's owner, so there is nobody to ask. The MutatingWebhookConfiguration's
// caBundle is that CA, so a renewed leaf needs no caBundle change.
type WebhookCert struct {
	// Client should be uncached, as CAStore's.
	Client   client.Client
	CA       func(ctx context.Context) (*signer.CA, error)
	Secret   types.NamespacedName
	DNSNames []string
	IPs      []net.IP
	// Validity of new pairs; zero means DefaultWebhookCertValidity.
	Validity time.Duration
}

// Ensure signs a new pair when the Secret holds none that is current (loads,
// names exactly DNSNames and IPs, chains to the CA, is not due), and says
// when to look again and whether it wrote one.
func (w *WebhookCert) Ensure(ctx context.Context) (next time.Time, issued bool, err error) {
	ca, err := w.CA(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("load CA: %w", err)
	}
	secret := &corev1.Secret{}
	err = w.Client.Get(ctx, w.Secret, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return time.Time{}, false, fmt.Errorf("get webhook certificate secret: %w", err)
	}
	exists := err == nil
	if exists {
		if renewAt, ok := currentPair(secret, w.DNSNames, w.IPs); ok && time.Now().Before(renewAt) && signedBy(secret, ca) {
			return renewAt, false, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("generate webhook key: %w", err)
	}
	validity := w.Validity
	if validity == 0 {
		validity = DefaultWebhookCertValidity
	}
	certPEM, err := ca.SignServing(&x509.CertificateRequest{
		Subject: pkix.Name{CommonName: w.DNSNames[0]}, DNSNames: w.DNSNames, IPAddresses: w.IPs, PublicKey: key.Public(),
	}, validity)
	if err != nil {
		return time.Time{}, false, err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("encode webhook key: %w", err)
	}
	secret.Name, secret.Namespace = w.Secret.Name, w.Secret.Namespace
	secret.Type = corev1.SecretTypeTLS
	secret.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, SecretKeyCA: ca.CertPEM}
	MarkManaged(secret)
	if exists {
		err = w.Client.Update(ctx, secret)
	} else {
		err = w.Client.Create(ctx, secret)
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store webhook certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("load signed webhook pair: %w", err)
	}
	return renewalTime(pair.Leaf), true, nil
}

// signedBy reports whether the Secret's leaf chains to ca: a pair from an
// earlier CA is replaced.
func signedBy(secret *corev1.Secret, ca *signer.CA) bool {
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return false
	}
	return pair.Leaf.CheckSignatureFrom(ca.Cert) == nil
}

// ServingSecret serves the pair of a Secret, as kept by WebhookCert, to a TLS
// server, and re-reads it every few seconds. Every replica of the manager
// serves the webhook, the leader alone renews the pair: the others follow
// the Secret. It keeps the pair in memory, so the manager needs no writable
// certificate directory.
type ServingSecret struct {
	// Client reads the Secret uncached.
	Client client.Reader
	Secret types.NamespacedName
	// Interval between reads; zero means five seconds.
	Interval time.Duration

	current atomic.Pointer[tls.Certificate]
}

var errNoServingPair = errors.New("the webhook's serving certificate is not loaded yet")

// GetCertificate is the TLS server's certificate: the Secret's last pair
// that loaded.
func (s *ServingSecret) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.current.Load(); c != nil {
		return c, nil
	}
	return nil, errNoServingPair
}

// Checker is a readiness check: a replica is ready once it can serve TLS.
func (s *ServingSecret) Checker(*http.Request) error {
	if s.current.Load() == nil {
		return errNoServingPair
	}
	return nil
}

// Load reads the Secret once; a pair that does not load leaves the current
// one in service.
func (s *ServingSecret) Load(ctx context.Context) error {
	secret := &corev1.Secret{}
	if err := s.Client.Get(ctx, s.Secret, secret); err != nil {
		return fmt.Errorf("get webhook certificate secret: %w", err)
	}
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("webhook certificate secret %s: %w", s.Secret, err)
	}
	if c := s.current.Load(); c == nil || !c.Leaf.Equal(pair.Leaf) {
		s.current.Store(&pair)
		ctrl.LoggerFrom(ctx).Info("Serving webhook certificate", "secret", s.Secret, "notAfter", pair.Leaf.NotAfter)
	}
	return nil
}

// Start follows the Secret until ctx ends. It is a manager Runnable.
func (s *ServingSecret) Start(ctx context.Context) error {
	interval := s.Interval
	if interval == 0 {
		interval = 5 * time.Second
	}
	// Faster at first: the leader may be creating the Secret right now.
	wait := 200 * time.Millisecond
	for {
		err := s.Load(ctx)
		if err == nil {
			wait = interval
		} else if s.current.Load() != nil || !apierrors.IsNotFound(errors.Unwrap(err)) {
			ctrl.LoggerFrom(ctx).Error(err, "Cannot read the webhook certificate; serving the last one loaded")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// NeedLeaderElection is false: every replica serves the webhook.
func (s *ServingSecret) NeedLeaderElection() bool { return false }

// CertDirCA returns what verifies a serving certificate issued by someone
// else: the ca.crt beside tls.crt and tls.key in dir, as cert-manager
// writes it. A directory without one, or with an empty one, gives nothing
// (the issuer's CA is not known here); a ca.crt with something else than
// certificates is an error.
func CertDirCA(dir string) func() ([]byte, error) {
	return func() ([]byte, error) {
		path := filepath.Join(dir, SecretKeyCA)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, nil
		}
		if _, err := certutil.ParseCertsPEM(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return data, nil
	}
}
