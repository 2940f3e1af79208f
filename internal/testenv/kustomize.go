package testenv

import (
	"fmt"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// RenderConfig builds the kustomization in dir, as `kustomize build` would,
// and returns its objects in the order kustomize emits them (the order of
// the resources in the kustomization files, not sorted by kind). A relative
// dir is taken from the repository root, so RenderConfig("config/default")
// is the operator as users install it.
//
// It runs kustomize in-process with the default options: loading is
// restricted to files under the kustomization's root, and neither plugins
// nor Helm charts are enabled.
func RenderConfig(dir string) ([]*unstructured.Unstructured, error) {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(RepoRoot(), dir)
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("build kustomization %s: %w", dir, err)
	}
	objs := make([]*unstructured.Unstructured, 0, resources.Size())
	for _, r := range resources.Resources() {
		// Through JSON, so numbers become int64 and float64 as
		// unstructured requires, not the int that YAML decoding gives.
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encode %s from %s: %w", r.CurId(), dir, err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("decode %s from %s: %w", r.CurId(), dir, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}
