package controllers

import (
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// Event reasons of the operator's certificates.
const (
	ReasonCertificateIssued = "CertificateIssued"
	ReasonCABundleInjected  = "CABundleInjected"
)

// certificateRetry is the pause after a failed issue: the CSR signer may
// not be running yet.
const certificateRetry = 10 * time.Second

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// ProxyCertReconciler keeps the proxies' serving pair current in the
// operator's namespace: at start, when the Secret changes or goes, and when
// the pair is due for renewal.
type ProxyCertReconciler struct {
	Issuer   *issuer.ProxyCertIssuer
	Recorder events.EventRecorder
}

// Reconcile issues the pair when it is missing, wrong or due.
func (r *ProxyCertReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	next, issued, err := r.Issuer.Ensure(ctx)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Proxy serving certificate not issued; retrying", "secret", r.Issuer.Secret)
		return ctrl.Result{RequeueAfter: certificateRetry}, nil
	}
	if issued && r.Recorder != nil {
		secret := &corev1.Secret{}
		if r.Issuer.Client.Get(ctx, r.Issuer.Secret, secret) == nil {
			r.Recorder.Eventf(secret, nil, corev1.EventTypeNormal, ReasonCertificateIssued, "Issue",
				"Issued the proxies' serving certificate through a CertificateSigningRequest for %s", signer.ProxySignerName)
		}
	}
	return ctrl.Result{RequeueAfter: time.Until(next)}, nil
}

// SetupWithManager runs the reconciler once at start and on events of the
// Secret.
func (r *ProxyCertReconciler) SetupWithManager(mgr ctrl.Manager) error {
	key := r.Issuer.Secret
	return ctrl.NewControllerManagedBy(mgr).
		Named("proxycert").
		WatchesRawSource(once(key)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(always(key)), builder.WithPredicates(named(key))).
		Complete(r)
}

// WebhookConfigReconciler keeps the webhook's serving pair (signed with the
// operator's CA) and the caBundle of the MutatingWebhookConfiguration that
// points the API server at it: at start, when either changes, and when the
// pair is due.
type WebhookConfigReconciler struct {
	client.Client
	Cert *issuer.WebhookCert
	// Configuration is the MutatingWebhookConfiguration's name.
	Configuration string
	Recorder      events.EventRecorder
}

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch;update,resourceNames=apisnoop-mutating-webhook-configuration

// Reconcile renews the pair when due and sets every webhook's caBundle to
// the CA.
func (r *WebhookConfigReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	next, issued, err := r.Cert.Ensure(ctx)
	if err != nil {
		log.Error(err, "Webhook serving certificate not issued; retrying", "secret", r.Cert.Secret)
		return ctrl.Result{RequeueAfter: certificateRetry}, nil
	}
	if issued {
		log.Info("Issued the webhook's serving certificate", "secret", r.Cert.Secret, "renewAt", next)
		secret := &corev1.Secret{}
		if r.Recorder != nil && r.Get(ctx, r.Cert.Secret, secret) == nil {
			r.Recorder.Eventf(secret, nil, corev1.EventTypeNormal, ReasonCertificateIssued, "Issue", "Issued the pod webhook's serving certificate")
		}
	}
	ca, err := r.Cert.CA(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("load CA: %w", err)
	}
	config := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := r.Get(ctx, client.ObjectKey{Name: r.Configuration}, config); err != nil {
		// Installed later, or by hand: its creation is an event.
		log.Info("No webhook configuration to inject the CA into yet", "mutatingWebhookConfiguration", r.Configuration, "error", err.Error())
		return ctrl.Result{RequeueAfter: time.Until(next)}, client.IgnoreNotFound(err)
	}
	changed := false
	for i := range config.Webhooks {
		if string(config.Webhooks[i].ClientConfig.CABundle) != string(ca.CertPEM) {
			config.Webhooks[i].ClientConfig.CABundle = ca.CertPEM
			changed = true
		}
	}
	if changed {
		if err := r.Update(ctx, config); err != nil {
			return ctrl.Result{}, fmt.Errorf("inject CA into %s: %w", r.Configuration, err)
		}
		log.Info("Injected the CA into the webhook configuration", "mutatingWebhookConfiguration", r.Configuration)
		if r.Recorder != nil {
			r.Recorder.Eventf(config, nil, corev1.EventTypeNormal, ReasonCABundleInjected, "Inject", "Set the caBundle to the operator's CA")
		}
	}
	return ctrl.Result{RequeueAfter: time.Until(next)}, nil
}

// SetupWithManager runs the reconciler once at start, and on events of the
// webhook configuration and of the pair's Secret.
func (r *WebhookConfigReconciler) SetupWithManager(mgr ctrl.Manager) error {
	key := types.NamespacedName{Name: r.Configuration}
	return ctrl.NewControllerManagedBy(mgr).
		Named("webhookconfig").
		WatchesRawSource(once(key)).
		Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, handler.EnqueueRequestsFromMapFunc(always(key)), builder.WithPredicates(named(key))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(always(key)), builder.WithPredicates(named(r.Cert.Secret))).
		Complete(r)
}

// once enqueues key when the controller starts.
func once(key types.NamespacedName) source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.Add(reconcile.Request{NamespacedName: key})
		return nil
	})
}

// always maps any event to key.
func always(key types.NamespacedName) handler.MapFunc {
	return func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: key}}
	}
}

// named passes the events of one object.
func named(key types.NamespacedName) predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetName() == key.Name && o.GetNamespace() == key.Namespace
	})
}
