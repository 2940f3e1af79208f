package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// certValidity is how long a leaf certificate lasts; a node lives for a test
// run, and one that is kept longer gets new leaves once renewBefore is left.
const (
	certValidity = 365 * 24 * time.Hour
	renewBefore  = 24 * time.Hour
)

// Node is what the certificates and kubeconfigs of one node are made for.
type Node struct {
	// Name is the node's name: the kubelet's user is system:node:<Name>.
	Name string
	// IP is the node's address, where kube-apiserver listens and
	// advertises itself.
	IP net.IP
	// ServiceIP is the kubernetes Service's cluster IP, the first address
	// of the service range.
	ServiceIP net.IP
	// Port is kube-apiserver's secure port.
	Port int
}

// Server is kube-apiserver's URL for every kubeconfig.
func (n Node) Server() string {
	return "https://" + net.JoinHostPort(n.IP.String(), fmt.Sprint(n.Port))
}

// Leaf is one certificate that the node's CA signs.
type Leaf struct {
	// Name is the file name: pki/<Name>.crt and pki/<Name>.key.
	Name string
	// CommonName and Organizations are the subject: a client's user name
	// and groups.
	CommonName    string
	Organizations []string
	// Server marks a serving certificate for DNSNames and IPs; the others
	// are client certificates.
	Server   bool
	DNSNames []string
	IPs      []net.IP
	// Kubeconfig, when set, is the kubeconfig file written for this client
	// certificate, relative to the output directory.
	Kubeconfig string
}

// Leaves lists the certificates of a node: kube-apiserver's serving
// certificate and one client certificate per user. Users and groups are
// the ones the API server's default RBAC policy binds: system:masters for
// the admin, system:node:<name> in system:nodes for the kubelet (Node
// authorizer), system:kube-controller-manager, system:kube-scheduler and
// system:kube-proxy (system:node-proxier); system:coredns, the cluster DNS,
// gets its read-only role from node.sh as kubeadm gives it.
func (n Node) Leaves() []Leaf {
	return []Leaf{{
		Name:       "apiserver",
		CommonName: "kube-apiserver",
		Server:     true,
		DNSNames: []string{
			"kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local", "localhost", n.Name,
		},
		IPs: []net.IP{n.IP, n.ServiceIP, net.IPv4(127, 0, 0, 1)},
	}, {
		Name:          "apiserver-kubelet-client",
		CommonName:    "kube-apiserver-kubelet-client",
		Organizations: []string{"system:masters"},
	}, {
		Name:          "admin",
		CommonName:    "kubernetes-admin",
		Organizations: []string{"system:masters"},
		Kubeconfig:    "kubeconfig",
	}, {
		Name:          "kubelet",
		CommonName:    "system:node:" + n.Name,
		Organizations: []string{"system:nodes"},
		Kubeconfig:    "etc/kubelet.kubeconfig",
	}, {
		Name:       "controller-manager",
		CommonName: "system:kube-controller-manager",
		Kubeconfig: "etc/controller-manager.kubeconfig",
	}, {
		Name:       "scheduler",
		CommonName: "system:kube-scheduler",
		Kubeconfig: "etc/scheduler.kubeconfig",
	}, {
		Name:       "kube-proxy",
		CommonName: "system:kube-proxy",
		Kubeconfig: "etc/kube-proxy.kubeconfig",
	}, {
		Name:       "coredns",
		CommonName: "system:coredns",
		Kubeconfig: "etc/coredns.kubeconfig",
	}}
}

// WritePKI makes, under dir, the node's CA (pki/ca.{crt,key}), the
// service-account key pair (pki/sa.{key,pub}), every leaf of Leaves and
// the leaves' kubeconfigs. What exists and still fits is kept: a second run
// changes nothing, so running components keep trusting the CA; a leaf is
// made anew when it is missing, was signed by another CA, names other
// subjects or addresses, or expires within renewBefore.
func WritePKI(dir string, n Node, now time.Time) error {
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	ca, caKey, err := loadOrMakeCA(pki, n.Name)
	if err != nil {
		return fmt.Errorf("make CA: %w", err)
	}
	if _, _, err := keyutil.LoadOrGenerateKeyFile(filepath.Join(pki, "sa.key")); err != nil {
		return fmt.Errorf("make service-account key: %w", err)
	}
	if err := writePublicKey(filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")); err != nil {
		return fmt.Errorf("write service-account public key: %w", err)
	}
	caPEM := encodeCert(ca)
	for _, l := range n.Leaves() {
		certPEM, keyPEM, err := loadOrMakeLeaf(pki, l, ca, caKey, now)
		if err != nil {
			return fmt.Errorf("make certificate %s: %w", l.Name, err)
		}
		if l.Kubeconfig == "" {
			continue
		}
		if err := writeKubeconfig(filepath.Join(dir, l.Kubeconfig), n.Server(), l.CommonName, caPEM, certPEM, keyPEM); err != nil {
			return fmt.Errorf("write kubeconfig for %s: %w", l.Name, err)
		}
	}
	return nil
}

// loadOrMakeCA reads pki/ca.{crt,key}, or makes a self-signed CA when
// either is missing: the operator's own CA type, which does both.
func loadOrMakeCA(pki, nodeName string) (*x509.Certificate, crypto.Signer, error) {
	crtFile, keyFile := filepath.Join(pki, "ca.crt"), filepath.Join(pki, "ca.key")
	if ok, _ := cert.CanReadCertAndKey(crtFile, keyFile); ok {
		certPEM, errC := os.ReadFile(crtFile)
		keyPEM, errK := os.ReadFile(keyFile)
		if err := errors.Join(errC, errK); err != nil {
			return nil, nil, err
		}
		ca, err := signer.ParseCA(certPEM, keyPEM)
		if err != nil {
			return nil, nil, err
		}
		return ca.Cert, ca.Key, nil
	}
	ca, err := signer.NewCA(nodeName + "-ca")
	if err != nil {
		return nil, nil, err
	}
	if err := errors.Join(keyutil.WriteKey(keyFile, ca.KeyPEM), cert.WriteCert(crtFile, ca.CertPEM)); err != nil {
		return nil, nil, err
	}
	return ca.Cert, ca.Key, nil
}

// loadOrMakeLeaf returns the PEM of leaf l's certificate and key, from
// pki/<l.Name>.{crt,key} when they still fit, else newly signed by ca.
func loadOrMakeLeaf(pki string, l Leaf, ca *x509.Certificate, caKey crypto.Signer, now time.Time) (certPEM, keyPEM []byte, err error) {
	crtFile, keyFile := filepath.Join(pki, l.Name+".crt"), filepath.Join(pki, l.Name+".key")
	certPEM, crtErr := os.ReadFile(crtFile)
	keyPEM, keyErr := os.ReadFile(keyFile)
	if crtErr == nil && keyErr == nil && fits(certPEM, l, ca, now) {
		return certPEM, keyPEM, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.CommonName, Organization: l.Organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if l.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames, tmpl.IPAddresses = l.DNSNames, l.IPs
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: der})
	if err := writeKeyPair(crtFile, keyFile, certPEM, key); err != nil {
		return nil, nil, err
	}
	keyPEM, err = os.ReadFile(keyFile)
	return certPEM, keyPEM, err
}

// fits reports whether certPEM is a certificate for l that ca signed and
// that is valid until at least renewBefore after now.
func fits(certPEM []byte, l Leaf, ca *x509.Certificate, now time.Time) bool {
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return false
	}
	c := certs[0]
	if c.CheckSignatureFrom(ca) != nil || now.Add(renewBefore).After(c.NotAfter) {
		return false
	}
	if c.Subject.CommonName != l.CommonName || !slices.Equal(c.Subject.Organization, l.Organizations) {
		return false
	}
	return slices.Equal(c.DNSNames, l.DNSNames) &&
		slices.EqualFunc(c.IPAddresses, l.IPs, func(a, b net.IP) bool { return a.Equal(b) })
}

// writeKeyPair writes a certificate and its private key, the key readable
// by root alone.
func writeKeyPair(crtFile, keyFile string, certPEM []byte, key crypto.PrivateKey) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	return errors.Join(keyutil.WriteKey(keyFile, keyPEM), cert.WriteCert(crtFile, certPEM))
}

// writePublicKey writes the public half of the private key in keyFile to
// pubFile, as kube-apiserver's --service-account-key-file reads it.
func writePublicKey(keyFile, pubFile string) error {
	key, err := keyutil.PrivateKeyFromFile(keyFile)
	if err != nil {
		return err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("%s holds no signing key", keyFile)
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if old, err := os.ReadFile(pubFile); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(pubFile, data, 0o644)
}

// writeKubeconfig writes a kubeconfig with one cluster, one user and one
// context, every credential embedded, so the file can be copied alone.
func writeKubeconfig(file, server, user string, caPEM, certPEM, keyPEM []byte) error {
	const name = "apisnoop-node"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(file); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// encodeCert returns c in PEM.
func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: c.Raw})
}
