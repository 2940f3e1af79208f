// Package certs holds the proxy's and the operator's certificate handling:
// serving certificates that follow their files as they are renewed.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// ServingFiles is a serving certificate read from a PEM certificate and key
// file, re-read when the files change (the operator renews the proxy's
// certificate before it expires, and the kubelet updates mounted Secrets).
type ServingFiles struct {
	content *dynamiccertificates.DynamicCertKeyPairContent

	mu      sync.Mutex
	certPEM []byte
	cert    *tls.Certificate
}

// NewServingFiles loads the pair once and fails when it does not load.
func NewServingFiles(certFile, keyFile string) (*ServingFiles, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("load serving certificate: a certificate file and a key file are required")
	}
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("serving-cert", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load serving certificate: %w", err)
	}
	s := &ServingFiles{content: content}
	if _, err := s.GetCertificate(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Run follows the files until ctx ends.
func (s *ServingFiles) Run(ctx context.Context) {
	s.content.Run(ctx, 1)
}

// GetCertificate is tls.Config.GetCertificate: the current pair.
func (s *ServingFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certPEM, keyPEM := s.content.CurrentCertKeyContent()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && bytes.Equal(certPEM, s.certPEM) {
		return s.cert, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load serving certificate: %w", err)
	}
	s.certPEM, s.cert = certPEM, &pair
	return s.cert, nil
}

// TLSConfig serves the current pair with HTTP/2 and HTTP/1.1.
func (s *ServingFiles) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: s.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
