package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// clusterRootCA is the ConfigMap the kube-controller-manager publishes in
// every namespace with the cluster's CA.
const clusterRootCA = "kube-root-ca.crt"

// trustRefresh is how often a target namespace is looked at without an
// event: for a rotated cluster CA (kube-root-ca.crt is not watched, to keep
// the cache to the operator's own objects). The live cluster's catalog,
// which changes as custom resources come and go, is followed more often
// (see followCatalog).
const trustRefresh = 5 * time.Minute

// trustPending is the pause while a namespace waits for the proxy pair or
// its kube-root-ca.crt.
const trustPending = 2 * time.Second

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete

// TrustReconciler keeps, in every namespace that a ready session targets,
// what injected pods mount: the proxy's serving pair (a copy of the
// operator's), the trust bundle (the cluster CA and the operator's) and, for
// sessions that measure against the live cluster, its catalog. They go when
// no session targets the namespace any more. A request names a namespace.
//
// Suspended and stopped sessions keep them: their injected pods still run
// and still mount them.
type TrustReconciler struct {
	// Client reads ConfigMaps and Secrets uncached and writes.
	client.Client
	// Cache reads SnoopSessions (with targets.NamespaceIndex), Namespaces
	// and the operator's own ConfigMaps and Secrets.
	Cache client.Reader
	CA    func(ctx context.Context) (*signer.CA, error)
	// ProxyPair is the Secret that the ProxyCertReconciler keeps.
	ProxyPair types.NamespacedName
	// CollectorCA returns more roots (PEM) that verify the collector, for
	// when it serves a certificate the operator's CA did not sign
	// (cert-manager's, whose ca.crt is in --webhook-cert-dir); sidecars
	// read the copy's ca.crt for --collector-ca-file. Nil: the operator's
	// CA alone.
	CollectorCA func() ([]byte, error)
	// Releases builds the live cluster's catalog.
	Releases ClusterCatalogs
	// Skip lists the namespaces the webhook never injects, as the ignore
	// label does: nothing is written there.
	Skip []string
	// CatalogCheck is how often the live cluster's catalog is asked for
	// while namespaces hold copies of it, so that the copies follow the
	// cluster's API (see followCatalog); zero means
	// releases.DefaultClusterTTL.
	CatalogCheck time.Duration

	// The live catalog and its schemas, encoded once per catalog the
	// resolver returns (it keeps one until the cluster's API changes), not
	// once per namespace and event. encodedSchemas is nil when the catalog
	// has none or they do not fit beside it.
	encodedFor     *catalog.Catalog
	encoded        []byte
	encodedSchemas []byte
}

// catalogConfigMapBudget bounds what the catalog ConfigMap holds: the API
// server refuses a ConfigMap whose values add up to more than 1 MiB. Measured
// on envtest's v1.37.2 with two small CRDs (internal/manager's cluster test):
// 17.7 kB of catalog and 19.9 kB of schemas, so custom resources have most of
// the room.
const catalogConfigMapBudget = 1 << 20

// Reconcile brings one namespace's copies in line with the sessions.
func (r *TrustReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	ns := req.Name
	if ns == r.ProxyPair.Namespace {
		// The operator's own: the proxy pair there has the copies' name
		// and is the original, and nothing there is ever injected.
		return ctrl.Result{}, nil
	}
	namespace := &corev1.Namespace{}
	if err := r.Cache.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if namespace.DeletionTimestamp != nil {
		return ctrl.Result{}, nil // its objects go with it
	}
	needed, needCatalog, err := false, false, error(nil)
	if _, ignored := namespace.Labels[snoopv1alpha1.IgnoreLabel]; !ignored && !slices.Contains(r.Skip, ns) {
		needed, needCatalog, err = r.needs(ctx, namespace)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if !needed {
		return ctrl.Result{}, r.remove(ctx, ns)
	}

	pair := &corev1.Secret{}
	if err := r.Get(ctx, r.ProxyPair, pair); err != nil || len(pair.Data[corev1.TLSCertKey]) == 0 {
		log.V(1).Info("Waiting for the proxy serving certificate", "secret", r.ProxyPair)
		return ctrl.Result{RequeueAfter: trustPending}, client.IgnoreNotFound(err)
	}
	root := &corev1.ConfigMap{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: clusterRootCA}, root); err != nil {
		log.V(1).Info("Waiting for the cluster CA in the namespace", "configMap", klog.KRef(ns, clusterRootCA))
		return ctrl.Result{RequeueAfter: trustPending}, client.IgnoreNotFound(err)
	}
	ca, err := r.CA(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("load CA: %w", err)
	}

	collectorRoots := ca.CertPEM
	if r.CollectorCA != nil {
		// A broken ca.crt must not stop what pods need to start (the pair,
		// the bundle): only shipping to the collector suffers from it.
		if extra, err := r.CollectorCA(); err != nil {
			log.Error(err, "The collector's CA is unreadable; sidecars verify the collector with the operator's CA alone")
		} else {
			collectorRoots = issuer.JoinPEM(ca.CertPEM, extra)
		}
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.ProxyCertSecret}}
	if err := r.ensure(ctx, secret, func() {
		secret.Type = corev1.SecretTypeTLS
		secret.Data = map[string][]byte{
			corev1.TLSCertKey:       pair.Data[corev1.TLSCertKey],
			corev1.TLSPrivateKeyKey: pair.Data[corev1.TLSPrivateKeyKey],
			issuer.SecretKeyCA:      collectorRoots,
		}
	}); err != nil {
		return ctrl.Result{}, err
	}
	bundle := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.TrustBundleConfigMap}}
	if err := r.ensure(ctx, bundle, func() {
		bundle.Data = map[string]string{webhook.TrustBundleKey: string(issuer.TrustBundle([]byte(root.Data["ca.crt"]), ca))}
	}); err != nil {
		return ctrl.Result{}, err
	}
	if needCatalog {
		if err := r.ensureCatalog(ctx, ns); err != nil {
			return ctrl.Result{}, err
		}
	} else if err := r.deleteManaged(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.CatalogConfigMap}}); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: trustRefresh}, nil
}

// needs reports whether a ready session targets the namespace, and whether
// one of them measures against the live cluster.
func (r *TrustReconciler) needs(ctx context.Context, namespace *corev1.Namespace) (needed, needCatalog bool, err error) {
	sessions, err := targets.SessionsFor(ctx, r.Cache, namespace.Name)
	if err != nil {
		return false, false, err
	}
	for i := range sessions {
		s := &sessions[i]
		if s.DeletionTimestamp != nil || !meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionReady) {
			continue
		}
		sel, err := targets.New(s)
		if err != nil || !sel.SelectsNamespace(namespace.Name, namespace.Labels) {
			continue
		}
		needed = true
		needCatalog = needCatalog || s.Spec.KubernetesRelease == snoopv1alpha1.ClusterRelease
	}
	return needed, needCatalog, nil
}

func (r *TrustReconciler) ensureCatalog(ctx context.Context, ns string) error {
	c, err := r.Releases.Resolve(ctx, snoopv1alpha1.ClusterRelease)
	if err != nil {
		return fmt.Errorf("build the cluster's catalog: %w", err)
	}
	if c != r.encodedFor {
		data, schemas, err := encodeCatalog(ctx, c, catalogConfigMapBudget)
		if err != nil {
			return err
		}
		r.encodedFor, r.encoded, r.encodedSchemas = c, data, schemas
	}
	data, schemas := r.encoded, r.encodedSchemas
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.CatalogConfigMap}}
	return r.ensure(ctx, cm, func() {
		cm.BinaryData = map[string][]byte{webhook.CatalogKey: data}
		if schemas != nil {
			cm.BinaryData[webhook.SchemasKey] = schemas
		}
	})
}

// encodeCatalog encodes the catalog and its request-body schemas for the
// sidecars. The catalog is what every request needs, the schemas only what
// field coverage needs: schemas that would take the two past budget bytes
// are left out, and sessions keeping bodies record without field coverage.
func encodeCatalog(ctx context.Context, c *catalog.Catalog, budget int) (data, schemas []byte, err error) {
	data, err = catalog.Encode(c)
	if err != nil {
		return nil, nil, err
	}
	s, err := c.Schemas()
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("The cluster's catalog has no body schemas: sidecars measure no field coverage", "reason", err.Error())
		return data, nil, nil
	}
	schemas, err = catalog.EncodeSchemas(s)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the cluster's body schemas: %w", err)
	}
	if len(data)+len(schemas) > budget {
		ctrl.LoggerFrom(ctx).Info("The cluster's body schemas do not fit beside its catalog in a ConfigMap: sidecars measure no field coverage",
			"catalogBytes", len(data), "schemasBytes", len(schemas), "limitBytes", budget)
		return data, nil, nil
	}
	return data, schemas, nil
}

// ensure creates or repairs one of the operator's objects.
func (r *TrustReconciler) ensure(ctx context.Context, obj client.Object, mutate func()) error {
	op, err := controllerutil.CreateOrUpdate(ctx, r.Client, obj, func() error {
		mutate()
		issuer.MarkManaged(obj)
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	if op != controllerutil.OperationResultNone {
		ctrl.LoggerFrom(ctx).Info("Wrote injected pods' trust object", "namespace", obj.GetNamespace(), "name", obj.GetName(), "operation", op)
	}
	return nil
}

// remove deletes the namespace's copies.
func (r *TrustReconciler) remove(ctx context.Context, ns string) error {
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.ProxyCertSecret}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.TrustBundleConfigMap}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.CatalogConfigMap}},
	} {
		if err := r.deleteManaged(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// deleteManaged deletes an object the operator wrote; the cache, which holds
// only those, says whether there is one, so that namespaces without copies
// cost no request.
func (r *TrustReconciler) deleteManaged(ctx context.Context, obj client.Object) error {
	if err := r.Cache.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !issuer.IsManaged(obj) {
		return nil
	}
	if err := r.Delete(ctx, obj, client.Preconditions{UID: ptrTo(obj.GetUID())}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	ctrl.LoggerFrom(ctx).Info("Removed injected pods' trust object: no session targets the namespace", "namespace", obj.GetNamespace(), "name", obj.GetName())
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// SetupWithManager watches sessions, namespaces and the operator's own
// ConfigMaps and Secrets (the manager's cache holds only those).
func (r *TrustReconciler) SetupWithManager(mgr ctrl.Manager) error {
	catalogChanged := make(chan event.GenericEvent)
	// Leader-only, as the controller: the runnable does not opt out of
	// leader election.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return r.followCatalog(ctx, catalogChanged) })); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("trust").
		Watches(&snoopv1alpha1.SnoopSession{}, handler.EnqueueRequestsFromMapFunc(r.namespacesOfSession)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetName()}}}
		})).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.namespaceOfCopy)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.namespaceOfCopy)).
		WatchesRawSource(source.Channel(catalogChanged, &handler.EnqueueRequestForObject{})).
		Complete(r)
}

// namespacesOfSession maps a session event to the namespaces it targets, and
// to those that hold copies now (which it may have stopped targeting).
func (r *TrustReconciler) namespacesOfSession(ctx context.Context, obj client.Object) []reconcile.Request {
	s, ok := obj.(*snoopv1alpha1.SnoopSession)
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	if names, ok := targets.Namespaces(s); ok {
		for _, ns := range names {
			seen[ns] = true
		}
	} else if sel, err := targets.New(s); err == nil {
		var list corev1.NamespaceList
		if err := r.Cache.List(ctx, &list); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Cannot list namespaces")
		}
		for _, ns := range list.Items {
			if sel.SelectsNamespace(ns.Name, ns.Labels) {
				seen[ns.Name] = true
			}
		}
	}
	for _, ns := range r.namespacesWithCopies(ctx) {
		seen[ns] = true
	}
	return namespaceRequests(seen)
}

// namespaceOfCopy maps an event of one of the operator's objects to its
// namespace; a renewed proxy pair goes to every namespace holding a copy.
func (r *TrustReconciler) namespaceOfCopy(ctx context.Context, obj client.Object) []reconcile.Request {
	if obj.GetNamespace() == r.ProxyPair.Namespace {
		if obj.GetName() != r.ProxyPair.Name {
			return nil
		}
		seen := map[string]bool{}
		for _, ns := range r.namespacesWithCopies(ctx) {
			seen[ns] = true
		}
		return namespaceRequests(seen)
	}
	switch obj.GetName() {
	case webhook.ProxyCertSecret, webhook.TrustBundleConfigMap, webhook.CatalogConfigMap:
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: obj.GetNamespace()}}}
	}
	return nil
}

func (r *TrustReconciler) namespacesWithCopies(ctx context.Context) []string {
	var list corev1.ConfigMapList
	if err := r.Cache.List(ctx, &list, client.MatchingLabelsSelector{Selector: issuer.Managed()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Cannot list the operator's ConfigMaps")
		return nil
	}
	var names []string
	for _, cm := range list.Items {
		if cm.Name == webhook.TrustBundleConfigMap {
			names = append(names, cm.Namespace)
		}
	}
	return names
}

func namespaceRequests(names map[string]bool) []reconcile.Request {
	requests := make([]reconcile.Request, 0, len(names))
	for ns := range names {
		requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}})
	}
	return requests
}
