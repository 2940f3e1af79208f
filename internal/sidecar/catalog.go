package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// loadCatalog returns the catalog requests are matched against: the file
// when one is given and readable, else the embedded release. It never
// fails, because a sidecar that fails keeps its pod from starting, and a
// release must never block a pod: without a catalog it still proxies, and
// every request is recorded as unknown. warnf says, once, what went wrong.
//
// A catalog from file takes its body schemas from schemasFile, read only
// when they are first asked for (the recorder does with the first kept
// body), so that a sidecar keeping no bodies never holds them. A missing or
// unreadable schemas file leaves bodies unmeasured and is warned about then,
// once. Embedded catalogs have their own schemas and ignore schemasFile.
func loadCatalog(file, schemasFile, release string, warnf func(format string, args ...any)) *catalog.Catalog {
	if file != "" {
		c, err := readCatalogFile(file)
		if err == nil {
			withSchemas(c, schemasFile, warnf)
			return c
		}
		warnf("Warning: cannot use --catalog-file, matching against --release %s instead: %v", release, err)
	}
	c, err := catalog.Load(release)
	switch {
	case errors.Is(err, catalog.ErrUnsupportedRelease):
		warnf("Warning: this proxy does not embed Kubernetes %s (it has %s): every request is recorded as unknown; "+
			"pass --catalog-file or use a newer sidecar image", release, strings.Join(catalog.Releases(), ", "))
	case err != nil:
		warnf("Warning: every request is recorded as unknown: %v", err)
	default:
		return c
	}
	// Named after the release, so that results and the collector say what
	// was asked for.
	return &catalog.Catalog{Release: release}
}

func readCatalogFile(file string) (*catalog.Catalog, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read catalog file: %w", err)
	}
	c, err := catalog.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("decode catalog file %s: %w", file, err)
	}
	return c, nil
}

// readSchemasFile reads schemas as catalog.EncodeSchemas writes them. The
// file comes from the same ConfigMap as the catalog but is read later, so
// after a change of the cluster's API it may be the newer one; operations
// it lacks go unmeasured. Its errors wrap catalog.ErrNoSchemas.
func readSchemasFile(file string) (*catalog.Schemas, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read schemas file: %w (%w)", err, catalog.ErrNoSchemas)
	}
	s, err := catalog.DecodeSchemas(data)
	if err != nil {
		return nil, fmt.Errorf("decode schemas file %s: %w (%w)", file, err, catalog.ErrNoSchemas)
	}
	return s, nil
}

// defaultCatalogCheck is how often the sidecar looks at --catalog-file for
// a new catalog. The file is a mounted ConfigMap, which the operator
// rewrites when the live cluster's API changes (custom resources come and
// go) and the kubelet updates within about a minute; a stat every few
// seconds costs nothing next to that.
const defaultCatalogCheck = 10 * time.Second

// followCatalog matches requests against the catalog in file as it
// changes, until ctx ends. last is the file as it was before the catalog in
// use was read (nil if it was missing). Every interval it looks whether the
// file is another one (the kubelet swaps a ConfigMap volume's files whole:
// another modification time or size), and when the new one decodes, the
// recorder matches every request from then on against it. Requests counted
// before stay as they were counted: a request to a custom resource the
// catalog did not know yet stays unknown. A file that is missing or cannot
// be read is looked at again next time; one that does not decode leaves the
// catalog in use and is warned about once per version of the file.
func followCatalog(ctx context.Context, file string, last os.FileInfo, schemasFile string, interval time.Duration, rec *record.Recorder, logf func(format string, args ...any)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		info, err := os.Stat(file)
		if err != nil || last != nil && info.ModTime().Equal(last.ModTime()) && info.Size() == last.Size() {
			continue
		}
		c, err := readCatalogFile(file)
		if pathErr := (*fs.PathError)(nil); errors.As(err, &pathErr) {
			continue // mid-swap: the next look reads it
		}
		last = info
		if err != nil {
			logf("Warning: --catalog-file changed but cannot be used, matching against the catalog read before: %v", err)
			continue
		}
		withSchemas(c, schemasFile, logf)
		rec.SetMatcher(match.New(c))
		logf("Catalog %s changed: matching against Kubernetes %s (%d operations) from now on", file, c.Release, len(c.Operations))
	}
}

// withSchemas makes c take its body schemas from schemasFile, read when
// they are first asked for.
func withSchemas(c *catalog.Catalog, schemasFile string, warnf func(format string, args ...any)) {
	if schemasFile == "" {
		return
	}
	c.SetSchemasLoader(func() (*catalog.Schemas, error) {
		s, err := readSchemasFile(schemasFile)
		if err != nil {
			warnf("Warning: request bodies are not measured for field coverage: %v", err)
		}
		return s, err
	})
}
