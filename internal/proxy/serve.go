package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

const (
	// readHeaderTimeout bounds slow clients; there is deliberately no write
	// timeout, because a watch response lasts as long as the watch.
	readHeaderTimeout = 30 * time.Second
	idleTimeout       = 5 * time.Minute
	// shutdownGrace is how long ordinary requests may take to finish once
	// shutdown starts. Long-running ones are ended at once (see withDrain):
	// clients re-establish watches and lose nothing.
	shutdownGrace = 10 * time.Second
)

// drainKey finds, in a request's context, the server's drain signal.
type drainKey struct{}

// withDrain derives a context that is also cancelled when the server that
// accepted the request starts to drain. Outside Serve it returns ctx as is.
func withDrain(ctx context.Context) (context.Context, context.CancelFunc) {
	drain, ok := ctx.Value(drainKey{}).(context.Context)
	if !ok {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(drain, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// Server is an http.Server speaking HTTP/2 and HTTP/1.1 whose requests see
// a drain signal, raised when it shuts down: long-running requests (watches,
// upgraded streams) end at once, others get shutdownGrace to finish. Serve
// and ServeTLS use one; so does the CONNECT mode for its intercepted
// connections.
type Server struct {
	HTTP       *http.Server
	startDrain context.CancelFunc
}

// NewServer returns a Server of h. tlsConfig may be nil when the listener
// hands out TLS connections already.
func NewServer(h http.Handler, tlsConfig *tls.Config) *Server {
	drain, startDrain := context.WithCancel(context.Background())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), drainKey{}, drain)
		},
	}
	return &Server{HTTP: srv, startDrain: startDrain}
}

// Serve serves h over TLS with cert on ln until ctx is done, then shuts down
// gracefully: it stops accepting, ends watches and upgraded streams, and
// gives other requests shutdownGrace to finish.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cert tls.Certificate) error {
	return ServeTLS(ctx, ln, h, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	})
}

// ServeTLS is Serve with a TLS configuration of the caller's, for
// certificates that change while serving (GetCertificate).
func ServeTLS(ctx context.Context, ln net.Listener, h http.Handler, tlsConfig *tls.Config) error {
	srv := NewServer(h, tlsConfig)
	return srv.ServeUntilDone(ctx, func(hs *http.Server) error { return hs.ServeTLS(ln, "", "") })
}

// ServeUntilDone runs serve (one of the http.Server's Serve methods on a
// listener) until it fails or ctx is done, and then shuts down.
func (s *Server) ServeUntilDone(ctx context.Context, serve func(*http.Server) error) error {
	served := make(chan error, 1)
	go func() { served <- serve(s.HTTP) }()
	select {
	case err := <-served:
		s.startDrain()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve proxy: %w", err)
	case <-ctx.Done():
	}
	return s.Shutdown()
}

// Shutdown raises the drain signal, gives requests shutdownGrace to finish
// and closes what is left.
func (s *Server) Shutdown() error {
	s.startDrain()
	graceCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := s.HTTP.Shutdown(graceCtx); err != nil {
		// Grace is over: cut the stragglers.
		_ = s.HTTP.Close()
		return fmt.Errorf("shut down proxy: %w", err)
	}
	return nil
}
