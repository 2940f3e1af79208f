// Package testenv starts the real control plane (kube-apiserver and etcd
// built by hack/build-control-plane.sh) that the envtest suites and the demo
// run against.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the version of the control plane built for tests; keep it
// in step with KUBE_VERSION in the Makefile.
const KubeVersion = "1.37.2"

// errNoBinaries tells the user how to build the control plane.
var errNoBinaries = errors.New("control-plane binaries not found: run 'make control-plane' (or set KUBEBUILDER_ASSETS)")

// RepoRoot is the root of this repository, found from this file's location so
// tests work from any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BinaryDir returns the directory holding kube-apiserver and etcd.
func BinaryDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "k8s", "v"+KubeVersion)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%w: %s missing in %s", errNoBinaries, name, dir)
		}
	}
	return dir, nil
}

// New returns an envtest environment with the project's CRDs, using the
// locally built control plane. Callers may adjust it before Start.
func New() (*envtest.Environment, error) {
	dir, err := BinaryDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: dir,
	}, nil
}

// WidgetsCRD is the path of a small custom resource definition
// (widgets.example.com, namespaced, v1) for tests of the live cluster's
// catalog.
func WidgetsCRD() string {
	return filepath.Join(RepoRoot(), "internal", "testenv", "testdata", "widgets.yaml")
}

// StartEmpty starts a control plane without the project's CRDs (for tests
// that apply rendered manifests, CRDs included, onto an API server that has
// never seen them), stops it when the test ends, and returns an uncached
// client. Missing binaries fail the test, as in every suite.
func StartEmpty(t testing.TB) client.Client {
	t.Helper()
	env, err := New()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDDirectoryPaths = nil
	env.ErrorIfCRDPathMissing = false
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
