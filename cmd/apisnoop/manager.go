package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/manager"
)

func newManagerCommand() *cobra.Command {
	var (
		metricsAddr, probeAddr string
		leaderElect            bool
		opConfig               manager.Config
	)
	zapOpts := zap.Options{}
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the operator: controllers, certificate signer and the pod webhook",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			if opConfig.Namespace == "" {
				opConfig.Namespace = operatorNamespace()
			}
			if opConfig.Webhook.SidecarImage == "" {
				return errors.New("--sidecar-image (or SIDECAR_IMAGE) is required: the image injected pods run the recording proxy from")
			}
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			mgr, err := manager.New(cfg, opConfig, ctrl.Options{
				// As the kubebuilder scaffold does: HTTPS, and only for
				// callers whose token the API server authenticates and who
				// may get /metrics (TokenReview and SubjectAccessReview).
				Metrics: metricsserver.Options{
					BindAddress:    metricsAddr,
					SecureServing:  true,
					FilterProvider: filters.WithAuthenticationAndAuthorization,
				},
				HealthProbeBindAddress: probeAddr,
				LeaderElection:         leaderElect,
				LeaderElectionID:       "apisnoop-manager.snoop.apisnoop.dev",
			})
			if err != nil {
				return err
			}
			ctrl.Log.WithName("setup").Info("Starting manager")
			return mgr.Start(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint (HTTPS, authenticated) binds to; 0 disables it")
	cmd.Flags().StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health probe endpoint binds to")
	cmd.Flags().BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one manager is active")
	cmd.Flags().StringVar(&opConfig.Namespace, "namespace", "", "Namespace of the operator's CA and certificate Secrets (default: the pod's, else apisnoop-system)")
	cmd.Flags().StringSliceVar(&opConfig.AuditSessionNamespaces, "audit-session-namespaces", nil, "Namespaces whose SnoopSessions may take the API server's audit stream (spec.source: audit), which counts requests from the whole cluster; * for every namespace (default: the operator's own)")
	cmd.Flags().DurationVar(&opConfig.CatalogCheck, "catalog-check-interval", releases.DefaultClusterTTL, "How often the live cluster's API is looked at for changes (custom resources, aggregated APIs) while sessions measure against it (kubernetesRelease: cluster); the catalog copies injected pods read follow within it")
	cmd.Flags().StringVar(&opConfig.ClusterDomain, "cluster-domain", "cluster.local", "The cluster's DNS domain, named in the proxy and webhook certificates")
	wh := &opConfig.Webhook
	cmd.Flags().StringVar(&wh.Host, "webhook-host", "", "Address the pod webhook server binds to (default: all)")
	cmd.Flags().IntVar(&wh.Port, "webhook-port", manager.DefaultWebhookPort, "Port of the pod webhook server")
	cmd.Flags().StringVar(&wh.CertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key issued by someone else (cert-manager); empty: the operator issues the webhook's certificate with its CA and keeps the webhook configuration's caBundle")
	cmd.Flags().StringVar(&wh.Service, "webhook-service", manager.DefaultWebhookService, "The webhook's Service in the operator's namespace, named in its certificate")
	cmd.Flags().StringSliceVar(&wh.ExtraNames, "webhook-cert-extra-names", nil, "More DNS names or IP addresses for the webhook's certificate (a manager run outside the cluster)")
	cmd.Flags().StringVar(&wh.Configuration, "webhook-configuration", manager.DefaultWebhookConfiguration, "The MutatingWebhookConfiguration whose caBundle the operator keeps")
	cmd.Flags().StringVar(&wh.SidecarImage, "sidecar-image", os.Getenv("SIDECAR_IMAGE"), "Image of the injected containers, holding /snoop-proxy and /apisnoop")
	cmd.Flags().StringVar(&wh.CollectorURL, "collector-url", "", "Where injected sidecars ship their deltas (default: the collector beside the webhook, https://WEBHOOK-SERVICE.NAMESPACE.svc/intake)")
	cmd.Flags().StringSliceVar(&wh.SkipNamespaces, "skip-namespaces", []string{"kube-system"}, "Namespaces never injected, besides the operator's own")
	zfs := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(zfs)
	cmd.Flags().AddGoFlagSet(zfs)
	return cmd
}

// operatorNamespace is the namespace the operator runs in: the downward API's
// POD_NAMESPACE, else the service account's, else apisnoop-system.
func operatorNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(data))
	}
	return "apisnoop-system"
}
