// Command kubectl-snoop is kube-apisnoop's kubectl plugin: offline coverage
// of API server audit logs, per-request classification, and (with the
// recording proxy) coverage of any command's API calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "kubectl-snoop",
		Short:         "Measure which Kubernetes API operations are used",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newCoverageCommand(), newClassifyCommand(), newRecordCommand(), newReportCommand(), newDiffCommand(), newHistoryCommand(), newAuditKubeconfigCommand())
	return root
}

func main() {
	root := newRootCommand()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	var exit exitError
	if errors.As(err, &exit) {
		// The recorded command failed; its own message is already printed.
		os.Exit(exit.code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-snoop:", err)
		os.Exit(1)
	}
}
