package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/auditscope"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

func newCoverageCommand() *cobra.Command {
	var (
		logs            []string
		release, output string
		openapiFile     string
		untested        bool
		maxRows         int
		filter          snoopv1alpha1.AuditFilter
		kubeconfig      *kubeconfigFlags
	)
	cmd := &cobra.Command{
		Use:   "coverage --audit-log FILE... [--release 1.37|cluster] [-o table|json|markdown|html]",
		Short: "Measure API coverage from API server audit logs",
		Long: `Reads API server audit logs, matches every request against a Kubernetes
release's API and prints coverage per level and the eligible operations no
request hit.

Logs at Request or RequestResponse level carry request bodies: their
field coverage (fields set, unknown, ill-typed) is reported too. A patch's
body is logged as sent; a create's or update's is the object the API server
decoded, so it includes defaults and drops unknown fields, and a body the
API server could not decode is not logged.

--release cluster measures against the API of the cluster --kubeconfig
reaches, read from its OpenAPI v3 documents when the command starts: custom
resources and aggregated APIs count, and their bodies are read against the
schemas the cluster publishes. Give the cluster that wrote the logs, with
the custom resources they mention still installed.

` + auditLogHelp,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(logs) == 0 {
				return fmt.Errorf("--audit-log is required")
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			cat, err := coverageCatalog(cmd.Context(), release, openapiFile, kubeconfig)
			if err != nil {
				return err
			}
			delta := &coverage.Delta{}
			opts := audit.Options{Progress: progressPrinter(), OnMalformed: malformedWarner()}
			if len(filter.Users)+len(filter.ServiceAccounts)+len(filter.Namespaces)+len(filter.UserAgents) > 0 {
				// The same rule as a SnoopSession's spec.audit.
				opts.Select = auditscope.NewSelector(&snoopv1alpha1.SnoopSession{Spec: snoopv1alpha1.SnoopSessionSpec{Audit: &filter}}).Matches
			}
			stats, err := audit.AnalyzeSources(cmd.Context(), logSources(logs), match.New(cat), delta, opts)
			if err != nil {
				return err
			}
			warnTotals(stats)
			return writeReport(cmd.OutOrStdout(), output, coverage.NewReport(cat, delta), report.Options{Untested: untested, MaxRows: maxRows},
				"audit log "+strings.Join(logs, ", "))
		},
	}
	cmd.Flags().StringArrayVar(&logs, "audit-log", nil, "audit log file (repeatable; .gz, or - for standard input)")
	cmd.Flags().StringVar(&release, "release", "1.37", "Kubernetes release to measure against (1.31 to 1.37, or cluster: the API of the cluster --kubeconfig reaches, custom resources included)")
	cmd.Flags().StringVar(&openapiFile, "openapi", "", "measure against this OpenAPI v2 document (a cluster's /openapi/v2) instead of an embedded release")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, markdown or html (one self-contained page)")
	cmd.Flags().BoolVar(&untested, "untested", true, "list the eligible operations no request hit")
	cmd.Flags().IntVar(&maxRows, "max-rows", 0, "cap long tables at this many rows (0: all)")
	kubeconfig = addKubeconfigFlags(cmd.Flags(), "with --release cluster: kubeconfig of the cluster whose API to measure against")
	// The filters of a SnoopSession's spec.audit, so that a session of the
	// audit stream and the audit log can be compared.
	cmd.Flags().StringArrayVar(&filter.Users, "user", nil, "count only requests by this user (repeatable; with --service-account: by any of them)")
	cmd.Flags().StringArrayVar(&filter.ServiceAccounts, "service-account", nil, "count only requests by this service account, as NAMESPACE/NAME (repeatable)")
	cmd.Flags().StringArrayVar(&filter.Namespaces, "object-namespace", nil, "count only requests about objects in this namespace (repeatable)")
	cmd.Flags().StringArrayVar(&filter.UserAgents, "user-agent", nil, "count only requests whose user agent starts with this (repeatable), like e2e.test/")
	return cmd
}

// coverageCatalog is the catalog audit logs are measured against: an
// embedded release, an OpenAPI v2 document, or the live cluster's API.
func coverageCatalog(ctx context.Context, release, openapiFile string, kubeconfig *kubeconfigFlags) (*catalog.Catalog, error) {
	if release != snoopv1alpha1.ClusterRelease {
		return loadCatalog(release, openapiFile)
	}
	if openapiFile != "" {
		return nil, fmt.Errorf("--openapi and --release cluster both name the API to measure against: give one")
	}
	restConfig, err := kubeconfig.clientConfig().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return loadReleaseCatalog(ctx, release, restConfig)
}
