// Package manager wires the operator's controllers and its pod webhook into
// a controller-runtime manager, the same way for the apisnoop binary, the
// demo and the tests.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"apisnoop.dev/kube-apisnoop/controllers"
	"apisnoop.dev/kube-apisnoop/internal/auditscope"
	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// Config is what the operator needs to know about where it runs.
type Config struct {
	// Namespace holds the operator's CA and certificate Secrets.
	Namespace string
	// ClusterDomain is the cluster's DNS domain, for certificate names.
	ClusterDomain string
	// AuditSessionNamespaces are where SnoopSessions with spec.source: audit
	// are taken ("*": everywhere); empty means Namespace only. See
	// auditscope.Namespaces.
	AuditSessionNamespaces []string
	// CatalogCheck is how often the live cluster's API is looked at for
	// changes (custom resources, aggregated APIs) while sessions measure
	// against it: their catalogs and the copies injected pods read follow
	// within it. Zero means releases.DefaultClusterTTL.
	CatalogCheck time.Duration
	Webhook      WebhookConfig
}

// WebhookConfig is how the pod webhook is served and what it injects.
type WebhookConfig struct {
	// Host and Port are where the webhook server listens; Port zero means
	// DefaultWebhookPort.
	Host string
	Port int
	// CertDir, when set, holds tls.crt and tls.key issued by someone else
	// (cert-manager): the manager serves them and leaves the caBundle
	// alone. When empty the operator issues the certificate with its own
	// CA and keeps the caBundle of Configuration current.
	CertDir string
	// Service is the webhook's Service in Namespace, whose DNS names the
	// certificate carries.
	Service string
	// ExtraNames are more certificate names: DNS names or IP addresses (a
	// manager run outside the cluster is called at https://127.0.0.1:PORT).
	ExtraNames []string
	// Configuration is the MutatingWebhookConfiguration's name.
	Configuration string
	// SidecarImage holds /apisnoop and /snoop-proxy.
	SidecarImage string
	// CollectorURL is where sidecars ship deltas: the manager's collector,
	// served beside the webhook. Empty means through the webhook's Service,
	// https://SERVICE.NAMESPACE.svc/intake.
	CollectorURL string
	// SkipNamespaces are never injected, besides the operator's own.
	SkipNamespaces []string
}

// Defaults of the webhook, as config/ deploys it.
const (
	DefaultWebhookPort          = 9443
	DefaultWebhookService       = "apisnoop-webhook-service"
	DefaultWebhookConfiguration = "apisnoop-mutating-webhook-configuration"
)

// Names of the operator's Secrets in its namespace. The proxy's pair has the
// name the injected sidecars mount it by, and is copied under that name into
// target namespaces.
const (
	CASecretName          = "apisnoop-ca"
	ProxyCertSecretName   = webhook.ProxyCertSecret
	WebhookCertSecretName = "apisnoop-webhook-tls"
)

// New returns a manager running every controller of the operator and its
// pod webhook. opts.Scheme is set when empty. The manager's client reads
// Secrets, ConfigMaps and Services from the API server, uncached, and its
// cache holds only the Secrets and ConfigMaps the operator wrote: a cache of
// all of them would watch and keep every Secret of the cluster.
func New(cfg *rest.Config, opConfig Config, opts ctrl.Options) (ctrl.Manager, error) {
	if opConfig.Namespace == "" {
		return nil, errors.New("create manager: the operator's namespace is required")
	}
	if opConfig.ClusterDomain == "" {
		opConfig.ClusterDomain = "cluster.local"
	}
	if opConfig.CatalogCheck < 0 {
		return nil, fmt.Errorf("create manager: --catalog-check-interval %s is negative: give a duration such as 30s (0 for the default)", opConfig.CatalogCheck)
	}
	wh := withWebhookDefaults(opConfig.Webhook)
	if opts.Scheme == nil {
		opts.Scheme = scheme.New()
	}
	if opts.Client.Cache == nil {
		opts.Client.Cache = &client.CacheOptions{}
	}
	opts.Client.Cache.DisableFor = append(opts.Client.Cache.DisableFor, &corev1.Secret{}, &corev1.ConfigMap{}, &corev1.Service{})
	if opts.Cache.ByObject == nil {
		opts.Cache.ByObject = map[client.Object]cache.ByObject{}
	}
	opts.Cache.ByObject[&corev1.Secret{}] = cache.ByObject{Label: issuer.Managed()}
	opts.Cache.ByObject[&corev1.ConfigMap{}] = cache.ByObject{Label: issuer.Managed()}
	opts.Cache.ByObject[&admissionregistrationv1.MutatingWebhookConfiguration{}] = cache.ByObject{
		Field: fields.OneTermEqualSelector("metadata.name", wh.Configuration),
	}

	// The signer approves proxy certificate requests from the operator's
	// own identity only; the API server says what that is (a service
	// account in a cluster, the kubeconfig's user when run locally).
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	self, err := clientset.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("ask the API server who the operator is: %w", err)
	}

	// The webhook's serving pair: from files, or from the Secret the
	// operator keeps, held in memory (no writable directory needed).
	var serving *issuer.ServingSecret
	webhookOpts := ctrlwebhook.Options{Host: wh.Host, Port: wh.Port, CertDir: wh.CertDir}
	if wh.CertDir == "" {
		serving = &issuer.ServingSecret{Secret: types.NamespacedName{Namespace: opConfig.Namespace, Name: WebhookCertSecretName}}
		webhookOpts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = serving.GetCertificate }}
	}
	opts.WebhookServer = ctrlwebhook.NewServer(webhookOpts)

	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := targets.IndexSessions(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	catalogs := &releases.Resolver{Discovery: disco, ClusterTTL: opConfig.CatalogCheck}
	aggregator := collector.NewAggregator()
	access := &collector.Access{
		TokenReviews: clientset.AuthenticationV1().TokenReviews(),
		Reviews:      clientset.AuthorizationV1().SubjectAccessReviews(),
	}
	// The API server's audit webhook backend, for sessions with
	// spec.source: audit.
	auditNamespaces := auditscope.Namespaces(opConfig.AuditSessionNamespaces)
	if len(auditNamespaces) == 0 {
		auditNamespaces = auditscope.Namespaces{opConfig.Namespace}
	}
	auditSink := &collector.AuditSink{
		Namespaces: auditNamespaces,
		Client:     mgr.GetCache(),
		Aggregator: aggregator,
		Releases:   catalogs,
		Access:     access,
		Elected:    mgr.Elected(),
	}
	caStore := &issuer.CAStore{Client: mgr.GetClient(), Secret: types.NamespacedName{Namespace: opConfig.Namespace, Name: CASecretName}}
	proxyPair := types.NamespacedName{Namespace: opConfig.Namespace, Name: ProxyCertSecretName}
	names := &issuer.ProxyNames{Client: mgr.GetClient(), ClusterDomain: opConfig.ClusterDomain}

	skip := append([]string{opConfig.Namespace}, wh.SkipNamespaces...)
	// The collector is served beside the webhook with its certificate:
	// issued by someone else, sidecars need that issuer's CA too.
	var collectorCA func() ([]byte, error)
	if wh.CertDir != "" {
		collectorCA = issuer.CertDirCA(wh.CertDir)
	}
	setups := []setup{
		{"SnoopSession controller", (&controllers.SnoopSessionReconciler{
			Client:          mgr.GetClient(),
			Scheme:          mgr.GetScheme(),
			Releases:        catalogs,
			Recorder:        mgr.GetEventRecorder("apisnoop-snoopsession"),
			ProxyCertSecret: proxyPair,
			Collector:       aggregator,
			AuditStream:     auditSink,
			AuditNamespaces: auditNamespaces,
		}).SetupWithManager},
		{"CSR signer", (&controllers.CSRSignerReconciler{
			Client:    mgr.GetClient(),
			CA:        caStore.Get,
			Requester: self.Status.UserInfo.Username,
			Names:     names,
		}).SetupWithManager},
		{"proxy certificate controller", (&controllers.ProxyCertReconciler{
			Issuer:   &issuer.ProxyCertIssuer{Client: mgr.GetClient(), Requests: clientset, CA: caStore.Get, Secret: proxyPair, Names: names},
			Recorder: mgr.GetEventRecorder("apisnoop-certificates"),
		}).SetupWithManager},
		{"results controller", (&controllers.ResultsReconciler{
			Client:     mgr.GetClient(),
			Aggregator: aggregator,
			Releases:   catalogs,
			Recorder:   mgr.GetEventRecorder("apisnoop-collector"),
		}).SetupWithManager},
		{"trust controller", (&controllers.TrustReconciler{
			Client:       mgr.GetClient(),
			Cache:        mgr.GetCache(),
			CA:           caStore.Get,
			ProxyPair:    proxyPair,
			CollectorCA:  collectorCA,
			Releases:     catalogs,
			Skip:         skip,
			CatalogCheck: opConfig.CatalogCheck,
		}).SetupWithManager},
	}
	if serving != nil {
		serving.Client = mgr.GetAPIReader()
		dnsNames, ips := issuer.WebhookNames(wh.Service, opConfig.Namespace, opConfig.ClusterDomain, wh.ExtraNames...)
		setups = append(setups, setup{"webhook configuration controller", (&controllers.WebhookConfigReconciler{
			Client:        mgr.GetClient(),
			Cert:          &issuer.WebhookCert{Client: mgr.GetClient(), CA: caStore.Get, Secret: serving.Secret, DNSNames: dnsNames, IPs: ips},
			Configuration: wh.Configuration,
			Recorder:      mgr.GetEventRecorder("apisnoop-certificates"),
		}).SetupWithManager})
		if err := mgr.Add(serving); err != nil {
			return nil, fmt.Errorf("add webhook certificate loader: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook-certificate", serving.Checker); err != nil {
			return nil, fmt.Errorf("add ready check: %w", err)
		}
	}
	for _, s := range setups {
		if err := s.with(mgr); err != nil {
			return nil, fmt.Errorf("set up %s: %w", s.name, err)
		}
	}

	// What the operator makes in its namespace goes when its installation
	// goes (see installationOwner).
	owner, ok, err := serviceAccountOwner(context.Background(), clientset, self.Status.UserInfo.Username, opConfig.Namespace)
	if err != nil {
		return nil, err
	}
	if ok {
		owned := &installationOwner{reader: mgr.GetAPIReader(), writer: mgr.GetClient(), owner: owner, interval: ownerInterval,
			secrets: []types.NamespacedName{caStore.Secret, proxyPair}}
		if serving != nil { // with cert-manager, the webhook's Secret is cert-manager's
			owned.secrets = append(owned.secrets, serving.Secret)
		}
		if opts.LeaderElection {
			namespace := opts.LeaderElectionNamespace
			if namespace == "" {
				namespace = opConfig.Namespace
			}
			owned.lease = &types.NamespacedName{Namespace: namespace, Name: opts.LeaderElectionID}
		}
		if err := mgr.Add(owned); err != nil {
			return nil, fmt.Errorf("add installation owner: %w", err)
		}
	}

	collectorURL := wh.CollectorURL
	if collectorURL == "" {
		collectorURL = "https://" + wh.Service + "." + opConfig.Namespace + ".svc" + intake.Path
	}
	mgr.GetWebhookServer().Register(webhook.Path, &admission.Webhook{Handler: &webhook.PodInjector{
		Client:       mgr.GetCache(),
		Decoder:      admission.NewDecoder(mgr.GetScheme()),
		Image:        wh.SidecarImage,
		CollectorURL: collectorURL,
		Skip:         skip,
	}})
	// The collector is served beside the webhook, with the same
	// certificate, which sidecars trust through the operator's CA.
	mgr.GetWebhookServer().Register(intake.Path, &collector.Intake{
		Tokens:     &collector.TokenReviewer{Client: clientset.AuthenticationV1().TokenReviews(), Audience: webhook.CollectorAudience},
		Client:     mgr.GetCache(),
		Aggregator: aggregator,
		Elected:    mgr.Elected(),
	})
	// Each session's live results, for whoever may get the session.
	mgr.GetWebhookServer().Register(collector.ResultsPathPrefix, &collector.ResultsAPI{
		Client:     mgr.GetCache(),
		Aggregator: aggregator,
		Releases:   catalogs,
		Access:     access,
	})
	mgr.GetWebhookServer().Register(collector.AuditPath, auditSink)
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, fmt.Errorf("add ready check: %w", err)
	}
	return mgr, nil
}

// setup adds one controller to the manager.
type setup struct {
	name string
	with func(ctrl.Manager) error
}

func withWebhookDefaults(wh WebhookConfig) WebhookConfig {
	if wh.Port == 0 {
		wh.Port = DefaultWebhookPort
	}
	if wh.Service == "" {
		wh.Service = DefaultWebhookService
	}
	if wh.Configuration == "" {
		wh.Configuration = DefaultWebhookConfiguration
	}
	if wh.SkipNamespaces == nil {
		wh.SkipNamespaces = []string{metav1.NamespaceSystem}
	}
	wh.SkipNamespaces = slices.Clone(wh.SkipNamespaces)
	return wh
}
