package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/client-go/rest"
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
	for _, value := range h["Connection"] {
		for token := range strings.SplitSeq(value, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "upgrade") {
				return true
			}
		}
	}
	return false
}

// upgradeTransportFor returns the configured upgrade transport or derives an
// HTTP/1.1-only one from a plain *http.Transport.
func upgradeTransportFor(normal, upgrade http.RoundTripper) (http.RoundTripper, error) {
	if upgrade != nil {
		return upgrade, nil
	}
	t, ok := normal.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("derive upgrade transport: %T is not an *http.Transport: set UpgradeTransport (see RESTTransports)", normal)
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

// RESTTransports builds the proxy's two upstream transports from a client-go
// config (the local record mode's kubeconfig, or the in-cluster config):
// both carry the config's credentials (client certificates, exec plugins,
// tokens) and CA; the second speaks only HTTP/1.1 for upgrades. Both leave
// Accept-Encoding to the client, so compressed responses pass through as the
// API server sent them.
func RESTTransports(cfg *rest.Config) (normal, upgrade http.RoundTripper, err error) {
	if cfg == nil {
		return nil, nil, errors.New("build transports: rest config is nil")
	}
	base := rest.CopyConfig(cfg)
	base.DisableCompression = true
	normal, err = rest.TransportFor(base)
	if err != nil {
		return nil, nil, fmt.Errorf("build transport: %w", err)
	}
	h1 := rest.CopyConfig(base)
	// client-go does not configure HTTP/2 when ALPN offers only http/1.1.
	h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	upgrade, err = rest.TransportFor(h1)
	if err != nil {
		return nil, nil, fmt.Errorf("build upgrade transport: %w", err)
	}
	return normal, upgrade, nil
}
