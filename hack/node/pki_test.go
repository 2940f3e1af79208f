package main

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/cert"
)

var testNode = Node{Name: "test-node", IP: net.ParseIP("10.200.0.1"), ServiceIP: net.ParseIP("10.96.0.1"), Port: 6443}

func TestWritePKI(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := WritePKI(dir, testNode, now); err != nil {
		t.Fatal(err)
	}
	pool, err := cert.NewPool(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range testNode.Leaves() {
		certs, err := cert.CertsFromFile(filepath.Join(dir, "pki", l.Name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		usage := x509.ExtKeyUsageClientAuth
		if l.Server {
			usage = x509.ExtKeyUsageServerAuth
		}
		opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := certs[0].Verify(opts); err != nil {
			t.Errorf("%s: %v", l.Name, err)
		}
		for _, host := range append(l.DNSNames, "10.200.0.1", "10.96.0.1", "127.0.0.1") {
			if !l.Server {
				break
			}
			if err := certs[0].VerifyHostname(host); err != nil {
				t.Errorf("%s: %v", l.Name, err)
			}
		}
		if l.Kubeconfig == "" {
			continue
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, l.Kubeconfig))
		if err != nil {
			t.Fatalf("%s: %v", l.Kubeconfig, err)
		}
		if cfg.Host != "https://10.200.0.1:6443" || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 || len(cfg.CAData) == 0 {
			t.Errorf("%s: host %q, credentials embedded: %v", l.Kubeconfig, cfg.Host, len(cfg.CertData) > 0)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "sa.pub")); err != nil {
		t.Error(err)
	}
}

// A second run keeps every file that still fits and renews a leaf whose
// addresses changed.
func TestWritePKIKeepsWhatFits(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := WritePKI(dir, testNode, now); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, "pki", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	ca, server, admin := read("ca.crt"), read("apiserver.crt"), read("admin.crt")
	if err := WritePKI(dir, testNode, now); err != nil {
		t.Fatal(err)
	}
	if read("ca.crt") != ca || read("apiserver.crt") != server || read("admin.crt") != admin {
		t.Error("second run with the same node changed certificates")
	}
	moved := testNode
	moved.IP = net.ParseIP("10.200.0.2")
	if err := WritePKI(dir, moved, now); err != nil {
		t.Fatal(err)
	}
	if read("ca.crt") != ca || read("admin.crt") != admin {
		t.Error("a new node address changed the CA or a client certificate")
	}
	if read("apiserver.crt") == server {
		t.Error("a new node address kept the old serving certificate")
	}
	if err := WritePKI(dir, moved, now.Add(certValidity)); err != nil {
		t.Fatal(err)
	}
	if read("admin.crt") == admin {
		t.Error("an expiring client certificate was kept")
	}
}
