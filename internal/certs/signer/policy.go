package signer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// ProxySignerName is the signer the operator acts as: it approves and signs
// only CertificateSigningRequests that name it, and no other signer signs
// them.
const ProxySignerName = "snoop.apisnoop.dev/proxy"

// ProxyPolicy says which CertificateSigningRequests for ProxySignerName the
// operator approves: those its own service account made, for a serving
// certificate, naming only the addresses a pod dials for the API server.
type ProxyPolicy struct {
	// Requester is the only user allowed to ask, the operator's service
	// account (system:serviceaccount:NAMESPACE:NAME).
	Requester string
	// DNSNames and IPs are the names a certificate may carry.
	DNSNames []string
	IPs      []net.IP
}

// ProxyNames are the names a pod uses for the API server: the kubernetes
// Service (by ClusterIP and DNS name, where iptables interception sends it to
// the proxy) and loopback (env interception).
func ProxyNames(clusterDomain string, serviceIPs ...net.IP) (dnsNames []string, ips []net.IP) {
	dnsNames = []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain, "localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	for _, ip := range serviceIPs {
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	return dnsNames, ips
}

// allowedUsages are what a serving certificate needs; server auth is
// required, client auth is refused (a proxy certificate must not become a
// client identity anywhere).
var allowedUsages = []certificatesv1.KeyUsage{
	certificatesv1.UsageServerAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment,
}

// Check returns the parsed request when the policy allows it, or an error
// saying why not, fit for a Denied condition's message.
func (p ProxyPolicy) Check(csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, error) {
	if csr.Spec.SignerName != ProxySignerName {
		return nil, fmt.Errorf("signer is %q, not %q", csr.Spec.SignerName, ProxySignerName)
	}
	if csr.Spec.Username != p.Requester {
		return nil, fmt.Errorf("requested by %q; only %q may request proxy certificates", csr.Spec.Username, p.Requester)
	}
	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth) {
		return nil, errors.New(`usages must include "server auth"`)
	}
	for _, u := range csr.Spec.Usages {
		if !slices.Contains(allowedUsages, u) {
			return nil, fmt.Errorf("usage %q is not allowed; allowed: %q", u, allowedUsages)
		}
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("spec.request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("request signature: %w", err)
	}
	if err := checkKey(req.PublicKey); err != nil {
		return nil, err
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return nil, errors.New("e-mail and URI names are not allowed")
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return nil, errors.New("the request names no DNS name or IP address")
	}
	for _, name := range req.DNSNames {
		if !slices.Contains(p.DNSNames, name) {
			return nil, fmt.Errorf("DNS name %q is not allowed; allowed: %q", name, p.DNSNames)
		}
	}
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(p.IPs, ip.Equal) {
			return nil, fmt.Errorf("IP address %s is not allowed; allowed: %s", ip, p.IPs)
		}
	}
	return req, nil
}

// checkKey accepts P-256 and P-384 ECDSA keys and RSA keys of 2048 bits or
// more.
func checkKey(key any) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not allowed; use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return fmt.Errorf("RSA key of %d bits is too short; use 2048 or more", k.N.BitLen())
	default:
		return fmt.Errorf("key type %T is not allowed; use ECDSA or RSA", key)
	}
}
