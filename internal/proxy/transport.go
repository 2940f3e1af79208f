package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"

	"apisnoop.dev/kube-apisnoop/internal/match"
)

// upgradeAwareTransport sends watches over the normal transport, which may
// use HTTP/2, and everything else over HTTP/1.1.
//
// Upgrades need HTTP/1.1: ReverseProxy can only pass a 101 Switching
// Protocols through when the upstream response body is the raw connection,
// which only an HTTP/1.1 connection gives. Watches last long and are many
// (one per informer), so they share one HTTP/2 connection. Every other
// request is cheaper over HTTP/1.1, for the proxy and for the API server:
// over HTTP/2 each is framed and HPACK-coded both ways, and the proxy's
// transport writes a WINDOW_UPDATE frame, a system call, for every few KiB
// of a response it reads, while HTTP/1.1 reads a response with no write at
// all. The price is a pooled connection per request in flight.
type upgradeAwareTransport struct {
	normal  http.RoundTripper
	upgrade http.RoundTripper
}

func (t *upgradeAwareTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isUpgrade(req.Header) && forwardsWatch(req) {
		return t.normal.RoundTrip(req)
	}
	return t.upgrade.RoundTrip(req)
}

// forwardsWatch reports whether a request to the upstream is a watch. The
// handler decided that from the client's path (begin): req's path has been
// joined to the upstream's since, and with a path prefix there (an API
// server behind a path, the service proxy) the API server's rules no longer
// see a watch in it. Only a request that did not come through the handler
// is parsed here, as it is.
func forwardsWatch(req *http.Request) bool {
	if ex := exchangeOf(req); ex != nil {
		return ex.watch
	}
	info, _ := match.NewRequestInfo(req.Method, req.URL.Path, req.URL.RawQuery)
	return isWatch(info)
}

// isUpgrade reports whether a request asks to switch protocols.
func isUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}

// upgradeTransportFor returns the configured upgrade transport or derives an
// HTTP/1.1-only one from a plain *http.Transport.
func upgradeTransportFor(normal, upgrade http.RoundTripper) (http.RoundTripper, error) {
	if upgrade != nil {
		return upgrade, nil
	}
	t, ok := normal.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("derive upgrade transport: %T is not an *http.Transport: set UpgradeTransport (see resttransport.For)", normal)
	}
	return http1Only(t), nil
}

// http1Only copies t with HTTP/2 switched off both ways: no forced attempt,
// no TLSNextProto upgrade and no "h2" offered in ALPN.
func http1Only(t *http.Transport) *http.Transport {
	t = t.Clone()
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if t.TLSClientConfig != nil {
		t.TLSClientConfig = t.TLSClientConfig.Clone()
	} else {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.NextProtos = []string{"http/1.1"}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	t.Protocols = &protocols
	return t
}
