// Package releases resolves a session's kubernetesRelease to the catalog of
// operations its requests are matched against: an embedded release, or for
// "cluster" the live cluster's own OpenAPI v3 documents. It is apart from
// package catalog because reading the cluster takes client-go, which the
// sidecar, linking catalog, must not link.
package releases

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/openapiv3"
)

// DefaultClusterTTL is how long the live cluster's catalog is used before
// the cluster is asked again whether its API changed: two small reads (the
// version and the OpenAPI v3 index, whose URLs carry each document's hash);
// the documents are read again only when the index changed.
const DefaultClusterTTL = 30 * time.Second

// documentFetches bounds the OpenAPI documents read at once: a cluster
// serves one per group-version, often a hundred or more.
const documentFetches = 8

// Resolver finds the catalog a kubernetesRelease stands for. Its catalogs
// are shared: callers must not modify them. The zero value resolves
// embedded releases only.
type Resolver struct {
	// Discovery reads the live cluster's version and OpenAPI v3 documents.
	// Without it, "cluster" is an unsupported release.
	Discovery discovery.DiscoveryInterface
	// ClusterTTL is how long the live cluster's catalog is reused before the
	// cluster's OpenAPI index is read again (custom resources come and go).
	// Zero means DefaultClusterTTL.
	ClusterTTL time.Duration
	// IncompleteRetry is how often a catalog that lacks a document the
	// index lists is built again while the index stays the same; zero means
	// DefaultIncompleteRetry.
	IncompleteRetry time.Duration

	mu            sync.Mutex
	cachedCluster *catalog.Catalog
	// checked is when the cluster's index was last read; built is the index
	// (version and every document's hashed URL) cachedCluster was built
	// from, at builtAt, so that an unchanged API is not read and parsed
	// again; complete says every document was read then.
	checked  time.Time
	built    string
	builtAt  time.Time
	complete bool
}

// Resolve returns the catalog of release: "cluster" or an embedded release
// such as "1.37". A release the operator cannot serve is an error wrapping
// catalog.ErrUnsupportedRelease whose message tells the user what to write
// instead.
func (r *Resolver) Resolve(ctx context.Context, release string) (*catalog.Catalog, error) {
	if release == snoopv1alpha1.ClusterRelease {
		return r.cluster(ctx, false)
	}
	c, err := catalog.Load(release)
	if errors.Is(err, catalog.ErrUnsupportedRelease) {
		return nil, fmt.Errorf("%w: spec.kubernetesRelease %q is not known to this operator; use one of %s or %q",
			catalog.ErrUnsupportedRelease, release, strings.Join(catalog.Releases(), ", "), snoopv1alpha1.ClusterRelease)
	}
	if err != nil {
		return nil, fmt.Errorf("load release %s: %w", release, err)
	}
	return c, nil
}

// CheckCluster returns the live cluster's catalog after asking the cluster
// whether its API changed, whatever the ClusterTTL: for a caller that looks
// on its own schedule (the trust controller's catalog follower), so that
// its every look reads the index rather than every other one.
func (r *Resolver) CheckCluster(ctx context.Context) (*catalog.Catalog, error) {
	return r.cluster(ctx, true)
}

// DefaultIncompleteRetry is how often a catalog built while some OpenAPI
// document could not be read (an aggregated API that is down answers 503
// for as long as it is down) is built again with the same index, so that
// the rest of the cluster's API is not read and parsed again at every
// check.
const DefaultIncompleteRetry = 5 * time.Minute

// cluster returns the cached catalog within the TTL unless fresh, else
// reads the cluster.
func (r *Resolver) cluster(ctx context.Context, fresh bool) (*catalog.Catalog, error) {
	if r.Discovery == nil {
		return nil, fmt.Errorf("%w: the live cluster's API is not available to this operator", catalog.ErrUnsupportedRelease)
	}
	ttl := r.ClusterTTL
	if ttl <= 0 {
		ttl = DefaultClusterTTL
	}
	// One reader at a time: concurrent reconciles wait for the first read
	// instead of each reading the whole API.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cachedCluster != nil && !fresh && time.Since(r.checked) < ttl {
		return r.cachedCluster, nil
	}
	c, err := r.read(ctx)
	if err != nil && r.cachedCluster != nil {
		// The catalog read before stays in use until the cluster answers
		// again: a moment of an unreachable API server must not fail every
		// session, the audit sink and the results API at once.
		logf.FromContext(ctx).Error(err, "Cannot read the live cluster's API: its catalog read before stays in use")
		r.checked = time.Now()
		return r.cachedCluster, nil
	}
	return c, err
}

// read reads the cluster's version and OpenAPI index and builds the catalog
// again when the index changed (or a document was missing the last time,
// at most every IncompleteRetry).
func (r *Resolver) read(ctx context.Context) (*catalog.Catalog, error) {
	disco := discovery.ToDiscoveryInterfaceWithContext(r.Discovery)
	version, err := disco.ServerVersionWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read cluster version: %w", err)
	}
	paths, err := disco.OpenAPIV3WithContext(ctx).PathsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read cluster OpenAPI v3 index: %w", err)
	}
	index := indexKey(version.GitVersion, paths)
	retry := r.IncompleteRetry
	if retry <= 0 {
		retry = DefaultIncompleteRetry
	}
	if r.cachedCluster != nil && index == r.built && (r.complete || time.Since(r.builtAt) < retry) {
		r.checked = time.Now()
		return r.cachedCluster, nil
	}

	docs, complete, err := readDocuments(ctx, paths)
	if err != nil {
		return nil, err
	}
	c, err := openapiv3.FromDocuments(docs, version.GitVersion)
	if err != nil {
		return nil, fmt.Errorf("build cluster catalog: %w", err)
	}
	// Say where the operations come from: the cluster, not an embedded release.
	c.Release = snoopv1alpha1.ClusterRelease + " " + version.GitVersion
	r.cachedCluster, r.built, r.complete = c, index, complete
	r.checked = time.Now()
	r.builtAt = r.checked
	return c, nil
}

// indexKey identifies the cluster's API as served now: the server's version
// and the documents' URLs, which carry a hash of their content.
func indexKey(version string, paths map[string]openapi.GroupVersionWithContext) string {
	urls := make([]string, 0, len(paths))
	for _, gv := range paths {
		urls = append(urls, gv.ServerRelativeURL())
	}
	slices.Sort(urls)
	return version + "\n" + strings.Join(urls, "\n")
}

// readDocuments fetches every document of the index as JSON. A document that
// is gone or whose aggregated API server is unavailable is left out, and its
// operations count as unknown until it is back: one broken APIService must
// not make the whole cluster unsupported. complete says whether none was
// left out.
func readDocuments(ctx context.Context, paths map[string]openapi.GroupVersionWithContext) (docs map[string][]byte, complete bool, err error) {
	log := logf.FromContext(ctx)
	var mu sync.Mutex
	docs, complete = make(map[string][]byte, len(paths)), true
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(documentFetches)
	for path, gv := range paths {
		g.Go(func() error {
			doc, err := gv.SchemaWithContext(gctx, "application/json")
			switch {
			case apierrors.IsNotFound(err) || apierrors.IsServiceUnavailable(err):
				log.Info("Leaving an unavailable OpenAPI document out of the cluster catalog", "document", path, "error", err.Error())
				mu.Lock()
				complete = false
				mu.Unlock()
				return nil
			case err != nil:
				return fmt.Errorf("read OpenAPI v3 document %s: %w", path, err)
			}
			mu.Lock()
			docs[path] = doc
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	return docs, complete, nil
}
