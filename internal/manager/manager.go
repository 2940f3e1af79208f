// Package manager wires the operator's controllers into a controller-runtime
// manager, the same way for the apisnoop binary, the demo and the tests.
package manager

import (
	"context"
	"errors"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"apisnoop.dev/kube-apisnoop/controllers"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// Config is what the operator needs to know about where it runs.
type Config struct {
	// Namespace holds the operator's CA and the proxy certificate Secrets.
	Namespace string
	// ClusterDomain is the cluster's DNS domain, for the proxy
	// certificate's names.
	ClusterDomain string
}

// Names of the operator's Secrets in its namespace. The proxy's pair has the
// name the injected sidecars mount it by.
const (
	CASecretName        = "apisnoop-ca"
	ProxyCertSecretName = webhook.ProxyCertSecret
)

// New returns a manager running every controller of the operator. opts.Scheme
// is set when empty, and the manager's client reads Secrets and Services
// from the API server, uncached: the operator reads a few of them rarely, and
// a cache would watch and keep every Secret of the cluster.
func New(cfg *rest.Config, opConfig Config, opts ctrl.Options) (ctrl.Manager, error) {
	if opts.Scheme == nil {
		opts.Scheme = scheme.New()
	}
	if opts.Client.Cache == nil {
		opts.Client.Cache = &client.CacheOptions{}
	}
	opts.Client.Cache.DisableFor = append(opts.Client.Cache.DisableFor, &corev1.Secret{}, &corev1.Service{})
	if opConfig.Namespace == "" {
		return nil, errors.New("create manager: the operator's namespace is required")
	}
	if opConfig.ClusterDomain == "" {
		opConfig.ClusterDomain = "cluster.local"
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
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	if err := (&controllers.SnoopSessionReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Releases: &controllers.ReleaseCatalogs{Discovery: disco},
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up SnoopSession controller: %w", err)
	}
	caStore := &controllers.CAStore{Client: mgr.GetClient(), Secret: types.NamespacedName{Namespace: opConfig.Namespace, Name: CASecretName}}
	names := &controllers.ProxyNames{Client: mgr.GetClient(), ClusterDomain: opConfig.ClusterDomain}
	if err := (&controllers.CSRSignerReconciler{
		Client:    mgr.GetClient(),
		CA:        caStore.Get,
		Requester: self.Status.UserInfo.Username,
		Names:     names,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up CSR signer: %w", err)
	}
	if err := mgr.Add(&controllers.ProxyCertIssuer{
		Client:   mgr.GetClient(),
		Requests: clientset,
		CA:       caStore.Get,
		Secret:   types.NamespacedName{Namespace: opConfig.Namespace, Name: ProxyCertSecretName},
		Names:    names,
	}); err != nil {
		return nil, fmt.Errorf("add proxy certificate issuer: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add ready check: %w", err)
	}
	return mgr, nil
}
