// Command relayfloor is the floor of the sidecar benchmarks below Go's
// net/http: a TLS-terminating byte relay that reads nothing of what it
// forwards. Each client connection gets its own upstream connection, both
// speaking HTTP/1.1, and bytes are copied both ways as they come. Any proxy
// that terminates TLS in Go, records or not, pays at least this: the TLS
// records, the reads and writes on both connections and the goroutine
// wake-ups between them. It takes the sidecar's flags and ignores those it
// has no use for.
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
	ln, err := tls.Listen("tcp", f.Listen, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		log.Fatal(err)
	}
	dial := &tls.Config{RootCAs: f.Roots, ServerName: f.Upstream.Hostname(), NextProtos: []string{"http/1.1"}}
	for {
		client, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relay(client, f.Upstream.Host, dial)
	}
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay copies between the client and a new upstream connection until
// either side closes.
func relay(client net.Conn, upstream string, dial *tls.Config) {
	defer client.Close()
	server, err := tls.Dial("tcp", upstream, dial)
	if err != nil {
		log.Printf("dial %s: %v", upstream, err)
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
	_ = client.(*tls.Conn).CloseWrite()
	<-done
}

func copyWith(dst io.Writer, src io.Reader) {
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	_, _ = io.CopyBuffer(dst, src, *buf)
}
