package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

func writePair(t *testing.T, dir, host string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair.Leaf
}

func served(t *testing.T, s *ServingFiles) *x509.Certificate {
	t.Helper()
	cert, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf
}

func TestServingFilesFollowsRenewal(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := writePair(t, dir, "first")
	s, err := NewServingFiles(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !served(t, s).Equal(first) {
		t.Fatal("the first pair is not served")
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("reload of unchanged files: changed %v, err %v", changed, err)
	}

	// A half-written renewal (new certificate, old key) keeps the old pair.
	certPEM, _, err := certutil.GenerateSelfSignedCertKey("half", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err == nil {
		t.Fatalf("a mismatched pair was taken: changed %v, err %v", changed, err)
	}
	if !served(t, s).Equal(first) {
		t.Fatal("a mismatched pair replaced the served one")
	}

	// A complete renewal is taken up by Run.
	_, _, second := writePair(t, dir, "second")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for !served(t, s).Equal(second) {
		if time.Now().After(deadline) {
			t.Fatal("the renewed pair was not taken up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.Reload(); err != nil {
		t.Fatalf("error after a good reload: %v", err)
	}
}

func TestServingFilesRefusesMissingFiles(t *testing.T) {
	if _, err := NewServingFiles("", ""); err == nil {
		t.Error("no files: no error")
	}
	dir := t.TempDir()
	if _, err := NewServingFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err == nil {
		t.Error("missing files: no error")
	}
}
