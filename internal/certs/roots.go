package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// RootsFile is a set of trusted CAs read from a PEM file and read again when
// a server's certificate does not verify against what was read before: the
// operator rewrites the file a pod mounts when the CA that signs the
// collector's certificate changes (cert-manager's, at a renewal), and a
// sidecar running for weeks must follow without a restart. Nothing is
// polled; a good chain costs no read.
type RootsFile struct {
	path string

	current atomic.Pointer[x509.CertPool]
	mu      sync.Mutex // one read at a time
}

// NewRootsFile reads the file once and fails when it holds no certificate.
func NewRootsFile(path string) (*RootsFile, error) {
	r := &RootsFile{path: path}
	if err := r.read(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RootsFile) read() error {
	pool, err := LoadRoots(r.path)
	if err != nil {
		return err
	}
	r.current.Store(pool)
	return nil
}

// LoadRoots reads a pool of trusted CAs from a PEM file once; it fails when
// the file holds no certificate.
func LoadRoots(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("no PEM certificate in %s", path)
	}
	return pool, nil
}

// TLSConfig verifies a server, named serverName (a DNS name or an IP
// address, as in the URL dialled), against the file's CAs, as RootCAs and
// ServerName would, but reads the file again before refusing a chain.
func (r *RootsFile) TLSConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// Verification is VerifyConnection's, with the same rules (chain,
		// and serverName: the connection state has no name for an IP
		// address, which is sent without SNI) against the current pool.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return r.verify(cs, serverName)
		},
	}
}

func (r *RootsFile) verify(cs tls.ConnectionState, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	if serverName == "" {
		return errors.New("no server name to verify the certificate for")
	}
	err := verifyChain(cs, serverName, r.current.Load())
	if err == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if readErr := r.read(); readErr != nil {
		return err // the pool read before stays
	}
	return verifyChain(cs, serverName, r.current.Load())
}

func verifyChain(cs tls.ConnectionState, serverName string, roots *x509.CertPool) error {
	opts := x509.VerifyOptions{Roots: roots, DNSName: serverName, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}
