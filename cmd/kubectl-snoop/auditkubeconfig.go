package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// What the operator is installed with by default (the chart, config/). They
// are the manager's and the collector's own constants, repeated here so
// that kubectl-snoop does not link the operator; a test keeps them equal.
const (
	// defaultAuditWriter is the service account made for the API server's
	// audit webhook backend, in the operator's namespace.
	defaultAuditWriter = "apisnoop-audit-writer"
	// auditPath is auditPath.
	auditPath = "/audit"
	// webhookService and webhookConfiguration are
	// webhookService and DefaultWebhookConfiguration.
	webhookService       = "apisnoop-webhook-service"
	webhookConfiguration = "apisnoop-mutating-webhook-configuration"
)

func newAuditKubeconfigCommand() *cobra.Command {
	var (
		namespace, serviceAccount, service, webhookConfig, server string
		duration                                                  time.Duration
	)
	var kubeconfig *kubeconfigFlags
	cmd := &cobra.Command{
		Use:   "audit-kubeconfig [--server URL] [--duration 8760h]",
		Short: "Print the kubeconfig that wires the API server's audit webhook to the manager",
		Long: `Prints a kubeconfig for the API server's --audit-webhook-config-file, so
that SnoopSessions with spec.source: audit get the API server's audit events.

It points at the manager's audit sink (` + auditPath + ` on the webhook Service),
trusts the CA that signs the manager's serving certificate (the caBundle of
its MutatingWebhookConfiguration), and authenticates with a token of the
service account the chart makes for it (` + defaultAuditWriter + `), issued
for --duration. Renew it before it expires.

The API server usually cannot resolve cluster DNS names: by default the
server is the webhook Service's cluster IP, with the Service's DNS name as
the TLS server name. Use --server where the API server reaches the manager
another way.

Then start the API server with:
  --audit-policy-file=POLICY                 (Metadata level is enough)
  --audit-webhook-config-file=THIS_FILE
  --audit-webhook-mode=batch                 (the default)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			restConfig, err := kubeconfig.clientConfig().ClientConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			clientset, err := kubernetes.NewForConfig(restConfig)
			if err != nil {
				return fmt.Errorf("create client: %w", err)
			}
			kc, err := auditKubeconfig(cmd.Context(), clientset, auditKubeconfigOptions{
				Namespace: namespace, ServiceAccount: serviceAccount, Service: service,
				WebhookConfiguration: webhookConfig, Server: server, Duration: duration,
			})
			if err != nil {
				return err
			}
			data, err := clientcmd.Write(*kc)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	flags := cmd.Flags()
	flags.StringVarP(&namespace, "namespace", "n", "apisnoop-system", "the operator's namespace")
	flags.StringVar(&serviceAccount, "service-account", defaultAuditWriter, "service account whose token the API server sends (it must be allowed to create auditevents.snoop.apisnoop.dev)")
	flags.StringVar(&service, "service", webhookService, "the manager's webhook Service")
	flags.StringVar(&webhookConfig, "webhook-configuration", webhookConfiguration, "the MutatingWebhookConfiguration whose caBundle signs the manager's certificate")
	flags.StringVar(&server, "server", "", "URL of the audit sink as the API server reaches it (default: https://CLUSTER_IP:PORT"+auditPath+" of the Service)")
	flags.DurationVar(&duration, "duration", 365*24*time.Hour, "how long the token is valid")
	kubeconfig = addKubeconfigFlags(flags, "kubeconfig of the cluster the operator runs in")
	return cmd
}

type auditKubeconfigOptions struct {
	Namespace, ServiceAccount, Service, WebhookConfiguration, Server string
	Duration                                                         time.Duration
}

// auditKubeconfig builds the API server's audit webhook kubeconfig.
func auditKubeconfig(ctx context.Context, c kubernetes.Interface, o auditKubeconfigOptions) (*clientcmdapi.Config, error) {
	mwc, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, o.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the manager's webhook configuration %s (is the operator installed?): %w", o.WebhookConfiguration, err)
	}
	ca := caBundleOf(mwc)
	if len(ca) == 0 {
		return nil, fmt.Errorf("the webhook configuration %s has no caBundle yet: wait until the manager is Ready", o.WebhookConfiguration)
	}
	cluster := &clientcmdapi.Cluster{Server: o.Server, CertificateAuthorityData: ca}
	if cluster.Server == "" {
		svc, err := c.CoreV1().Services(o.Namespace).Get(ctx, o.Service, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read the manager's Service %s/%s: %w", o.Namespace, o.Service, err)
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" || len(svc.Spec.Ports) == 0 {
			return nil, fmt.Errorf("the Service %s/%s has no cluster IP and port: pass --server", o.Namespace, o.Service)
		}
		port := strconv.Itoa(int(svc.Spec.Ports[0].Port))
		cluster.Server = "https://" + net.JoinHostPort(svc.Spec.ClusterIP, port) + auditPath
		cluster.TLSServerName = o.Service + "." + o.Namespace + ".svc"
	}
	seconds := int64(o.Duration / time.Second)
	tr, err := c.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, o.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("issue a token for service account %s/%s: %w", o.Namespace, o.ServiceAccount, err)
	}
	kc := clientcmdapi.NewConfig()
	const name = "apisnoop-audit-sink"
	kc.Clusters[name] = cluster
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	return kc, nil
}

// caBundleOf is the first caBundle of the configuration's webhooks: the
// manager serves every webhook with one certificate.
func caBundleOf(mwc *admissionregistrationv1.MutatingWebhookConfiguration) []byte {
	for _, w := range mwc.Webhooks {
		if len(w.ClientConfig.CABundle) > 0 {
			return w.ClientConfig.CABundle
		}
	}
	return nil
}
