// Package certs holds the proxy's and the operator's certificate handling:
// serving certificates that follow their files as they are renewed.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often ServingFiles looks at its files. The
// operator renews a proxy's certificate long before it expires and the kubelet
// takes up to a minute to update a mounted Secret, so seconds do not matter.
const DefaultReloadInterval = 10 * time.Second

// ServingFiles is a serving certificate read from a PEM certificate and key
// file and re-read when the files change (the operator renews the proxy's
// certificate before it expires, and the kubelet updates mounted Secrets).
//
// It polls instead of watching: the kubelet replaces a Secret volume's files
// by swapping a symlink, which file watches follow poorly, and a read every
// few seconds costs nothing. It is small on purpose: the sidecar links it,
// and every dependency of the sidecar is resident memory in every pod.
type ServingFiles struct {
	certFile, keyFile string

	current atomic.Pointer[tls.Certificate]

	mu              sync.Mutex // guards what follows: one reload at a time
	certPEM, keyPEM []byte
}

// NewServingFiles loads the pair once and fails when it does not load.
func NewServingFiles(certFile, keyFile string) (*ServingFiles, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("load serving certificate: a certificate file and a key file are required")
	}
	s := &ServingFiles{certFile: certFile, keyFile: keyFile}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run re-reads the files every interval until ctx ends. A pair that does not
// load (a half-written update) keeps the current one in service; the next
// tick tries again.
func (s *ServingFiles) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.Reload()
		}
	}
}

// Reload reads both files and takes the pair up if it changed and loads. It
// reports whether the served certificate changed.
func (s *ServingFiles) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, err := os.ReadFile(s.certFile)
	if err == nil {
		var keyPEM []byte
		keyPEM, err = os.ReadFile(s.keyFile)
		if err == nil {
			if bytes.Equal(certPEM, s.certPEM) && bytes.Equal(keyPEM, s.keyPEM) {
				return false, nil
			}
			var pair tls.Certificate
			if pair, err = tls.X509KeyPair(certPEM, keyPEM); err == nil {
				s.certPEM, s.keyPEM = certPEM, keyPEM
				s.current.Store(&pair)
				return true, nil
			}
		}
	}
	return false, fmt.Errorf("load serving certificate: %w", err)
}

// GetCertificate is tls.Config.GetCertificate: the current pair.
func (s *ServingFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}

// TLSConfig serves the current pair with HTTP/2 and HTTP/1.1.
func (s *ServingFiles) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: s.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
