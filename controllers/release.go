package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/discovery"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// ReleaseCatalogs resolves a session's kubernetesRelease to the catalog of
// operations its requests are matched against: an embedded release, or for
// "cluster" the live cluster's own OpenAPI document.
type ReleaseCatalogs struct {
	// Discovery reads the live cluster's version and OpenAPI document.
	Discovery discovery.DiscoveryInterface
	// ClusterTTL is how long the live cluster's catalog is reused before it is
	// read again (custom resources come and go). Zero means five minutes.
	ClusterTTL time.Duration

	mu          sync.Mutex
	cluster     *catalog.Catalog
	clusterRead time.Time
}

// Resolve implements ReleaseResolver.
func (r *ReleaseCatalogs) Resolve(_ context.Context, release string) (*catalog.Catalog, error) {
	if release == snoopv1alpha1.ClusterRelease {
		return r.clusterCatalog()
	}
	c, err := catalog.Load(release)
	if err != nil {
		return nil, fmt.Errorf("%w: spec.kubernetesRelease %q is not known to this operator; use one of %s or %q",
			ErrUnsupportedRelease, release, strings.Join(catalog.Releases(), ", "), snoopv1alpha1.ClusterRelease)
	}
	return c, nil
}

func (r *ReleaseCatalogs) clusterCatalog() (*catalog.Catalog, error) {
	if r.Discovery == nil {
		return nil, fmt.Errorf("%w: the live cluster's API is not available to this operator", ErrUnsupportedRelease)
	}
	ttl := r.ClusterTTL
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cluster != nil && time.Since(r.clusterRead) < ttl {
		return r.cluster, nil
	}
	version, err := r.Discovery.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("read cluster version: %w", err)
	}
	doc, err := r.Discovery.RESTClient().Get().AbsPath("/openapi/v2").SetHeader("Accept", "application/json").DoRaw(context.Background())
	if err != nil {
		return nil, fmt.Errorf("read cluster OpenAPI document: %w", err)
	}
	c, err := catalog.FromOpenAPIV2(doc, version.GitVersion)
	if err != nil {
		return nil, err
	}
	// Say where the operations come from: the cluster, not an embedded release.
	c.Release = snoopv1alpha1.ClusterRelease + " " + version.GitVersion
	r.cluster, r.clusterRead = c, time.Now()
	return c, nil
}
