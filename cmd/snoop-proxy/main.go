// Command snoop-proxy is the recording proxy sidecar of injected pods: the
// same command as `apisnoop proxy`, built without the operator. A sidecar runs
// in every recorded pod, and a Go binary's resident memory grows with what it
// links (each package's initialisation touches its pages), so the sidecar
// links only the proxy, the matcher and the recorder.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"apisnoop.dev/kube-apisnoop/internal/sidecar"
)

func main() {
	// No CONNECT mode: it links goproxy, and pods reach the proxy through
	// the redirect or the environment, never through HTTPS_PROXY.
	root := sidecar.NewCommand("snoop-proxy", nil)
	root.SilenceUsage, root.SilenceErrors = true, true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "snoop-proxy:", err)
		os.Exit(1)
	}
}
