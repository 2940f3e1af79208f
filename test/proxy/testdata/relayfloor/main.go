// Command relayfloor is the floor of the sidecar benchmarks below Go's
// net/http: a TLS-terminating byte relay that reads nothing of what it
// forwards. Each client connection gets its own upstream connection, dialled
// during the client's handshake with the protocols the client offers, so
// that both sides agree on the same one (HTTP/2 or HTTP/1.1); bytes are then
// copied both ways as they come. Any proxy that terminates TLS in Go,
// records or not, pays at least this: the TLS records, the reads and writes
// on both connections and the goroutine wake-ups between them. It takes the
// sidecar's flags and ignores those it has no use for.
package main

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"sync"

	"apisnoop.dev/kube-apisnoop/test/proxy/testdata/floorflags"
)

func main() {
	f := floorflags.Parse()
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		log.Fatal(err)
	}
	dial := &tls.Config{RootCAs: f.Roots, ServerName: f.Upstream.Hostname()}
	for {
		raw, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relay(raw, pair, f.Upstream.Host, dial)
	}
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay dials the upstream while the client's handshake is under way,
// offering the client's protocols, and answers the client with the one the
// upstream chose; then it copies both ways until either side closes.
func relay(raw net.Conn, pair tls.Certificate, upstream string, dial *tls.Config) {
	var server *tls.Conn
	client := tls.Server(raw, &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := dial.Clone()
		cfg.NextProtos = hello.SupportedProtos
		conn, err := tls.Dial("tcp", upstream, cfg)
		if err != nil {
			return nil, err
		}
		server = conn
		var protos []string
		if p := conn.ConnectionState().NegotiatedProtocol; p != "" {
			protos = []string{p}
		}
		return &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: protos}, nil
	}})
	defer client.Close()
	if err := client.Handshake(); err != nil {
		log.Printf("handshake: %v", err)
		if server != nil {
			server.Close()
		}
		return
	}
	defer server.Close()
	done := make(chan struct{})
	go func() {
		copyWith(server, client)
		_ = server.CloseWrite()
		close(done)
	}()
	copyWith(client, server)
	_ = client.CloseWrite()
	<-done
}

func copyWith(dst io.Writer, src io.Reader) {
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	_, _ = io.CopyBuffer(dst, src, *buf)
}
