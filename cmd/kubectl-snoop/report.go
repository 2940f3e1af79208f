package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/report"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
)

func newReportCommand() *cobra.Command {
	var (
		output   string
		untested bool
		maxRows  int
	)
	var kubeconfig *kubeconfigFlags
	cmd := &cobra.Command{
		Use:   "report NAME [-n NAMESPACE] [-o table|json|markdown|html] [--untested]",
		Short: "Print the API coverage a SnoopSession recorded",
		Long: `Reads the SnoopSession NAME and the results the operator persisted for it
(its results ConfigMaps), measures them against the session's release (for
"cluster", the live cluster's API as it is now) and prints the coverage with
the eligible operations no request hit.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx := cmd.Context()
			sr, err := loadSessionResults(ctx, kubeconfig, "", args[0])
			if err != nil {
				return err
			}
			session, st, names, namespace, restConfig := sr.session, sr.state, sr.configMaps, sr.session.Namespace, sr.restConfig
			cat, err := loadReleaseCatalog(ctx, session.Spec.KubernetesRelease, restConfig)
			if err != nil {
				return fmt.Errorf("resolve release of SnoopSession %s/%s: %w", namespace, session.Name, err)
			}

			out := cmd.OutOrStdout()
			if output == "table" {
				fmt.Fprintf(out, "SnoopSession %s/%s, results in %s\n", namespace, session.Name, strings.Join(names, ", "))
				if st.Ignored > 0 {
					fmt.Fprintf(out, "%d requests shipped after the session stopped or while it was suspended are not counted\n", st.Ignored)
				}
				fmt.Fprintln(out)
			}
			source := fmt.Sprintf("SnoopSession %s/%s, results in %s", namespace, session.Name, strings.Join(names, ", "))
			return writeReport(out, output, coverage.NewReport(cat, &st.Delta), report.Options{Untested: untested, MaxRows: maxRows}, source)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, markdown or html (one self-contained page)")
	cmd.Flags().BoolVar(&untested, "untested", true, "list the eligible operations no request hit")
	cmd.Flags().IntVar(&maxRows, "max-rows", 0, "cap long tables at this many rows (0: all)")
	kubeconfig = addKubeconfigFlags(cmd.Flags(), "kubeconfig to reach the cluster with")
	cmd.Flags().StringVarP(&kubeconfig.overrides.Context.Namespace, "namespace", "n", "", "namespace of the SnoopSession; default: the kubeconfig context's")
	return cmd
}

// sessionResults are a SnoopSession and the results the operator persisted
// for it.
type sessionResults struct {
	session    *snoopv1alpha1.SnoopSession
	state      *results.State
	configMaps []string // the names of its results ConfigMaps
	restConfig *rest.Config
}

// loadSessionResults reads the SnoopSession name in namespace (empty: the
// kubeconfig context's) and its persisted results; no results yet is an
// error that says when there will be.
func loadSessionResults(ctx context.Context, kubeconfig *kubeconfigFlags, namespace, name string) (*sessionResults, error) {
	clientConfig := kubeconfig.clientConfig()
	restConfig, err := clientConfig.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	if namespace == "" {
		if namespace, _, err = clientConfig.Namespace(); err != nil {
			return nil, fmt.Errorf("load kubeconfig: %w", err)
		}
	}
	c, err := client.New(restConfig, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	session := &snoopv1alpha1.SnoopSession{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, session); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("SnoopSession %s not found in namespace %s", name, namespace)
		}
		return nil, fmt.Errorf("read SnoopSession %s/%s: %w", namespace, name, err)
	}
	st, names, err := results.Load(ctx, c, session)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("SnoopSession %s/%s has no results yet: no ConfigMap %s; the operator writes it once a target pod's sidecar has shipped requests",
			namespace, session.Name, results.Names(session.Name, 1)[0])
	}
	return &sessionResults{session: session, state: st, configMaps: names, restConfig: restConfig}, nil
}
