// Package resttransport builds the recording proxy's upstream transports from
// a client-go config. It is apart from package proxy so that the sidecar, which
// forwards its clients' own credentials, does not link client-go.
package resttransport

import (
	"errors"
	"fmt"
	"net/http"

	"k8s.io/client-go/rest"
)

// For builds the proxy's two upstream transports from a client-go
// config (the local record mode's kubeconfig, or the in-cluster config):
// both carry the config's credentials (client certificates, exec plugins,
// tokens) and CA; the second speaks only HTTP/1.1 for upgrades. Both leave
// Accept-Encoding to the client, so compressed responses pass through as the
// API server sent them.
func For(cfg *rest.Config) (normal, upgrade http.RoundTripper, err error) {
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
