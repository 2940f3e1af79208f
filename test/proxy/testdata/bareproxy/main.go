// Command bareproxy is the baseline of the sidecar benchmarks: Go's own
// httputil.ReverseProxy with TLS and HTTP/2 on both sides and nothing else,
// no matching, no recording. Against it, the benchmark separates what the
// recording costs from what proxying in Go costs at all. It takes the
// sidecar's flags and ignores those it has no use for.
package main

import (
	"crypto/tls"
	"log"
	"net/http"
	"net/http/httputil"

	"apisnoop.dev/kube-apisnoop/test/proxy/testdata/floorflags"
)

func main() {
	f := floorflags.Parse()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(f.Upstream) },
		// No transparent gzip: like the sidecar, it asks the upstream for
		// nothing the client did not ask for, so both decode the same bytes.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.Roots}, ForceAttemptHTTP2: true, DisableCompression: true},
	}
	log.Fatal((&http.Server{Addr: f.Listen, Handler: proxy}).ListenAndServeTLS(f.CertFile, f.KeyFile))
}
