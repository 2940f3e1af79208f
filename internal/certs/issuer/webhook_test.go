package issuer

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
)

// verifies reports whether a client that trusts exactly roots (PEM), as
// the sidecar's --collector-ca-file does, completes a TLS handshake with a
// loopback server presenting pair.
func verifies(t *testing.T, roots []byte, pair tls.Certificate) bool {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if conn, err := ln.Accept(); err == nil {
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) {
		t.Fatal("no certificate in the roots")
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// TestCollectorRootsWithCertManager: with a serving certificate issued by
// someone else (cert-manager writes tls.crt, tls.key and ca.crt into the
// Secret the manager mounts as --webhook-cert-dir), the roots sidecars get
// for the collector verify it, and still verify the operator's own.
func TestCollectorRootsWithCertManager(t *testing.T) {
	operatorCA, certManagerCA := proxytest.NewCA(t), proxytest.NewCA(t)
	dir := t.TempDir()
	load := CertDirCA(dir)
	if extra, err := load(); err != nil || extra != nil {
		t.Fatalf("a directory without ca.crt: %q, %v; want nothing", extra, err)
	}
	if err := os.WriteFile(filepath.Join(dir, SecretKeyCA), []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if extra, err := load(); err != nil || extra != nil {
		t.Fatalf("an empty ca.crt: %q, %v; want nothing", extra, err)
	}
	if err := os.WriteFile(filepath.Join(dir, SecretKeyCA), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load(); err == nil {
		t.Fatal("a ca.crt without a certificate was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, SecretKeyCA), certManagerCA.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	extra, err := load()
	if err != nil {
		t.Fatal(err)
	}
	roots := JoinPEM(operatorCA.PEM(), extra)

	certManagerPair, operatorPair := certManagerCA.Serving(t), operatorCA.Serving(t)
	if verifies(t, operatorCA.PEM(), certManagerPair) {
		t.Fatal("the operator's CA alone verifies cert-manager's certificate; the test proves nothing")
	}
	if !verifies(t, roots, certManagerPair) {
		t.Error("the collector roots do not verify cert-manager's certificate")
	}
	if !verifies(t, roots, operatorPair) {
		t.Error("the collector roots no longer verify the operator's own certificate")
	}
}

func TestJoinPEM(t *testing.T) {
	for _, c := range []struct {
		parts [][]byte
		want  string
	}{
		{nil, ""},
		{[][]byte{[]byte("a\n"), []byte("b\n")}, "a\nb\n"},
		{[][]byte{[]byte("a"), []byte("b")}, "a\nb"},
		{[][]byte{nil, []byte("b")}, "b"},
		{[][]byte{[]byte("a"), nil}, "a"},
	} {
		if got := string(JoinPEM(c.parts...)); got != c.want {
			t.Errorf("JoinPEM(%q) = %q, want %q", c.parts, got, c.want)
		}
	}
}
