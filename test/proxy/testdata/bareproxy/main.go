// Command bareproxy is the baseline of the sidecar benchmarks: Go's own
// httputil.ReverseProxy with TLS and HTTP/2 on both sides and nothing else,
// no matching, no recording. Against it, the benchmark separates what the
// recording costs from what proxying in Go costs at all. It takes the
// sidecar's flags and ignores those it has no use for.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	listen := flag.String("listen", "", "")
	upstream := flag.String("upstream", "", "")
	caFile := flag.String("upstream-ca-file", "", "")
	certFile := flag.String("cert-file", "", "")
	keyFile := flag.String("key-file", "", "")
	for _, ignored := range []string{"admin-listen", "results-listen", "pod-name", "pod-namespace", "service-account", "release"} {
		flag.String(ignored, "", "ignored")
	}
	flag.Bool("profiling", false, "ignored")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		// No transparent gzip: like the sidecar, it asks the upstream for
		// nothing the client did not ask for, so both decode the same bytes.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true, DisableCompression: true},
	}
	log.Fatal((&http.Server{Addr: *listen, Handler: proxy}).ListenAndServeTLS(*certFile, *keyFile))
}
