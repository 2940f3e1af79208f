package certs_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/certs"
	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
)

// TestRootsFileFollowsTheFile: a client of a RootsFile trusts what the file
// says when it connects: a server whose CA replaced the old one in the file
// is trusted without a restart, one the file never named is not, nor a
// certificate for another name.
func TestRootsFileFollowsTheFile(t *testing.T) {
	oldCA, newCA, otherCA := proxytest.NewCA(t), proxytest.NewCA(t), proxytest.NewCA(t)
	file := filepath.Join(t.TempDir(), "ca.crt")
	write := func(ca *proxytest.CA) {
		t.Helper()
		if err := os.WriteFile(file, ca.PEM(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(oldCA)
	roots, err := certs.NewRootsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	get := func(pair tls.Certificate, serverName string) error {
		t.Helper()
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		srv.StartTLS()
		defer srv.Close()
		cfg := roots.TLSConfig(serverName)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := client.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(oldCA.Serving(t), "127.0.0.1"); err != nil {
		t.Fatalf("a server of the file's CA: %v", err)
	}
	if err := get(newCA.Serving(t), "127.0.0.1"); err == nil {
		t.Fatal("a server of a CA the file does not name was trusted")
	}
	write(newCA) // the operator rewrote the file
	if err := get(newCA.Serving(t), "127.0.0.1"); err != nil {
		t.Fatalf("a server of the CA now in the file: %v", err)
	}
	if err := get(otherCA.Serving(t), "127.0.0.1"); err == nil {
		t.Error("a server of a CA never in the file was trusted")
	}
	// The connections all go to 127.0.0.1; the names are what the client
	// expects the certificate to say.
	if err := get(newCA.Serving(t), "collector.example"); err == nil {
		t.Error("a certificate for other DNS names was trusted")
	}
	if err := get(newCA.Serving(t), "10.0.0.1"); err == nil {
		t.Error("a certificate for other IP addresses was trusted")
	}
	if err := os.WriteFile(file, []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := get(newCA.Serving(t), "127.0.0.1"); err != nil {
		t.Errorf("a torn file lost the CAs read before: %v", err)
	}
	if _, err := certs.NewRootsFile(file); err == nil {
		t.Error("a file without a certificate was accepted")
	}
}
