package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// ClusterCatalogs resolves releases and can ask the cluster now whether its
// API changed, whatever its cache's age (releases.Resolver in the
// operator).
type ClusterCatalogs interface {
	ReleaseResolver
	// CheckCluster returns the live cluster's catalog after reading the
	// cluster's OpenAPI index.
	CheckCluster(ctx context.Context) (*catalog.Catalog, error)
}

// followCatalog keeps the catalog copies in step with the live cluster's
// API until ctx ends: every r.CatalogCheck, while some namespace holds a
// copy, it has the resolver read the cluster's version and small OpenAPI
// index (CheckCluster: with a cache as old as the interval, Resolve would
// read it only at every other look; the documents only when the index
// changed) and, when that gives another catalog than the one before, sends
// every namespace holding a copy to the reconciler, which rewrites it. A custom resource or aggregated API added
// to the cluster thus reaches the sidecars' --catalog-file without waiting
// for trustRefresh.
func (r *TrustReconciler) followCatalog(ctx context.Context, namespaces chan<- event.GenericEvent) error {
	interval := r.CatalogCheck
	if interval <= 0 {
		interval = releases.DefaultClusterTTL
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last *catalog.Catalog
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		holding, err := r.catalogCopies(ctx)
		if err != nil || len(holding) == 0 {
			continue
		}
		c, err := r.Releases.CheckCluster(ctx)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Cannot read the live cluster's API: its catalog copies stay as they are")
			continue
		}
		if c == last {
			continue
		}
		if last != nil {
			ctrl.LoggerFrom(ctx).Info("The cluster's API changed: rewriting its catalog copies", "operations", len(c.Operations), "namespaces", len(holding))
		}
		last = c
		for _, ns := range holding {
			select {
			case namespaces <- event.GenericEvent{Object: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// catalogCopies lists the namespaces that hold a copy of the live cluster's
// catalog (the cache holds the operator's own ConfigMaps).
func (r *TrustReconciler) catalogCopies(ctx context.Context) ([]string, error) {
	var list corev1.ConfigMapList
	if err := r.Cache.List(ctx, &list, client.MatchingLabelsSelector{Selector: issuer.Managed()}); err != nil {
		return nil, err
	}
	var namespaces []string
	for _, cm := range list.Items {
		if cm.Name == webhook.CatalogConfigMap {
			namespaces = append(namespaces, cm.Namespace)
		}
	}
	return namespaces, nil
}
