package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	certutil "k8s.io/client-go/util/cert"
)

const operator = "system:serviceaccount:apisnoop-system:apisnoop-controller-manager"

func testPolicy() ProxyPolicy {
	dns, ips := ProxyNames("cluster.local", net.ParseIP("10.96.0.1"))
	return ProxyPolicy{Requester: operator, DNSNames: dns, IPs: ips}
}

func request(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	pemData, err := certutil.MakeCSRFromTemplate(key, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return pemData
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestPolicy(t *testing.T) {
	key := p256(t)
	good := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "apisnoop-proxy"},
		DNSNames:    []string{"kubernetes.default.svc", "localhost"},
		IPAddresses: []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("127.0.0.1")},
	}
	serving := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	with := func(edit func(*x509.CertificateRequest)) *x509.CertificateRequest {
		r := *good
		edit(&r)
		return &r
	}
	tests := []struct {
		name    string
		user    string
		signer  string
		usages  []certificatesv1.KeyUsage
		key     crypto.Signer
		req     *x509.CertificateRequest
		raw     []byte
		wantErr string // empty: allowed
	}{
		{name: "serving certificate for the API server's names", req: good},
		{name: "only the service IP", req: with(func(r *x509.CertificateRequest) { r.DNSNames = nil; r.IPAddresses = []net.IP{net.ParseIP("10.96.0.1")} })},
		{name: "another requester", user: "system:serviceaccount:default:app", req: good, wantErr: `only "` + operator + `"`},
		{name: "another signer", signer: "kubernetes.io/kube-apiserver-client", req: good, wantErr: "not \"snoop.apisnoop.dev/proxy\""},
		{name: "client auth", usages: append(serving, certificatesv1.UsageClientAuth), req: good, wantErr: `usage "client auth" is not allowed`},
		{name: "no server auth", usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}, req: good, wantErr: `must include "server auth"`},
		{name: "foreign DNS name", req: with(func(r *x509.CertificateRequest) { r.DNSNames = []string{"api.example.com"} }), wantErr: `DNS name "api.example.com" is not allowed`},
		{name: "foreign IP", req: with(func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.ParseIP("10.0.0.7")} }), wantErr: "IP address 10.0.0.7 is not allowed"},
		{name: "e-mail name", req: with(func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"a@b.c"} }), wantErr: "e-mail and URI names"},
		{name: "URI name", req: with(func(r *x509.CertificateRequest) { r.URIs = []*url.URL{{Scheme: "spiffe", Host: "x"}} }), wantErr: "e-mail and URI names"},
		{name: "no names", req: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, wantErr: "names no DNS name or IP address"},
		{name: "short RSA key", key: small, req: good, wantErr: "RSA key of 1024 bits is too short"},
		{name: "P-224 key", key: p224, req: good, wantErr: "curve P-224 is not allowed"},
		{name: "not PEM", raw: []byte("garbage"), wantErr: "not a PEM CERTIFICATE REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: ProxySignerName, Username: operator, Usages: serving, Request: tt.raw,
			}}
			if tt.user != "" {
				csr.Spec.Username = tt.user
			}
			if tt.signer != "" {
				csr.Spec.SignerName = tt.signer
			}
			if tt.usages != nil {
				csr.Spec.Usages = tt.usages
			}
			if tt.raw == nil {
				k := tt.key
				if k == nil {
					k = key
				}
				csr.Spec.Request = request(t, k, tt.req)
			}
			_, err := testPolicy().Check(csr)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("allowed, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestCASignsServingCertificates(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatalf("a CA does not read back: %v", err)
	}
	key := p256(t)
	req, err := x509.ParseCertificateRequest(mustDER(t, request(t, key, &x509.CertificateRequest{
		DNSNames: []string{"kubernetes.default.svc"}, IPAddresses: []net.IP{net.ParseIP("10.96.0.1")},
	})))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := again.SignServing(req, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, name := range []string{"kubernetes.default.svc", "10.96.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a serving certificate verifies as a client certificate")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < time.Hour || life > time.Hour+2*time.Minute {
		t.Errorf("lifetime %s, want about an hour", life)
	}
	if _, err := ParseCA(certPEM, ca.KeyPEM); err == nil {
		t.Error("a leaf certificate was taken as a CA")
	}
}

func mustDER(t *testing.T, pemData []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}
