// Command apisnoop is kube-apisnoop's one binary: the operator (manager), the
// recording proxy sidecar (proxy) and the redirect init container (iptables).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"apisnoop.dev/kube-apisnoop/internal/proxy/connect"
	"apisnoop.dev/kube-apisnoop/internal/sidecar"
)

func main() {
	root := &cobra.Command{
		Use:           "apisnoop",
		Short:         "Measure how the Kubernetes API is really used",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// controller-runtime registers --kubeconfig on the standard flag set.
	root.PersistentFlags().AddGoFlagSet(flag.CommandLine)
	root.AddCommand(newManagerCommand(), sidecar.NewCommand("proxy", connect.Run), newIPTablesCommand())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root.SetContext(ctx)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "apisnoop:", err)
		os.Exit(1)
	}
}
