package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// upgradeAwareTransport sends upgrade requests over HTTP/1.1 and everything
// else over the normal transport (which may use HTTP/2). ReverseProxy can only
// pass a 101 Switching Protocols through when the upstream response body is
// the raw connection, which only an HTTP/1.1 connection gives.
type upgradeAwareTransport struct {
	normal  http.RoundTripper
	upgrade http.RoundTripper
}

func (t *upgradeAwareTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if isUpgrade(req.Header) {
		return t.upgrade.RoundTrip(req)
	}
	return t.normal.RoundTrip(req)
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
