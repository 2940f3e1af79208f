// Package testenv starts the real control plane (kube-apiserver and etcd
// built by hack/build-control-plane.sh) that the envtest suites and the demo
// run against. Start returns a ControlPlane with what every suite uses (an
// uncached client, an admin kubeconfig, fresh namespaces); a package of
// plain tests shares one through Shared, a single test starts its own with
// StartForTest, and a Ginkgo suite uses package suite.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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

// WidgetsCRD is the path of a small custom resource definition
// (widgets.example.com, namespaced, v1) for tests of the live cluster's
// catalog.
func WidgetsCRD() string {
	return filepath.Join(RepoRoot(), "internal", "testenv", "testdata", "widgets.yaml")
}
