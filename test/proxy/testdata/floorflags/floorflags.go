// Package floorflags reads the sidecar's flags for the benchmark floors
// (bareproxy, relayfloor), which run where the sidecar would and ignore
// what they have no use for.
package floorflags

import (
	"crypto/x509"
	"flag"
	"log"
	"net/url"
	"os"
)

// Flags is what a floor needs of the sidecar's flags.
type Flags struct {
	Listen            string
	Upstream          *url.URL
	Roots             *x509.CertPool // from --upstream-ca-file
	CertFile, KeyFile string
}

// Parse parses the command line, exiting on an error as a command does.
func Parse() Flags {
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
	return Flags{Listen: *listen, Upstream: target, Roots: roots, CertFile: *certFile, KeyFile: *keyFile}
}
