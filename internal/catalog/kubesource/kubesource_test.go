package kubesource

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// moduleDir returns the module cache directory of the k8s.io/kubernetes
// version a release's catalog was generated from.
func moduleDir(t *testing.T, release string) string {
	t.Helper()
	c, err := catalog.Load(release)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ModuleDir(c.Source)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// protoTrees returns the trees of the ProtoModules that go with a release's
// catalog.
func protoTrees(t *testing.T, release string) []fs.FS {
	t.Helper()
	c, err := catalog.Load(release)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := ProtoModuleDirs(c.Source)
	if err != nil {
		t.Fatal(err)
	}
	trees := make([]fs.FS, len(dirs))
	for i, dir := range dirs {
		trees[i] = os.DirFS(dir)
	}
	return trees
}

// TestRegenerateCatalogs checks that the embedded catalogs are what the
// generator builds from their recorded source, as go generate in CI
// expects.
func TestRegenerateCatalogs(t *testing.T) {
	for _, release := range catalog.Releases() {
		t.Run(release, func(t *testing.T) {
			embedded, err := catalog.Load(release)
			if err != nil {
				t.Fatal(err)
			}
			regenerated, err := catalog.FromKubernetesSource(os.DirFS(moduleDir(t, release)), release, embedded.Source)
			if err != nil {
				t.Fatal(err)
			}
			got, err := catalog.Encode(regenerated)
			if err != nil {
				t.Fatal(err)
			}
			want, err := catalog.Encode(embedded)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("regenerated catalog (%d bytes) differs from the embedded one (%d bytes); run go generate ./internal/catalog", len(got), len(want))
			}
		})
	}
}

// TestRegenerateSchemas checks that the embedded schemas are what the
// generator builds from their recorded source, byte for byte.
func TestRegenerateSchemas(t *testing.T) {
	for _, release := range catalog.Releases() {
		t.Run(release, func(t *testing.T) {
			embedded, err := catalog.LoadSchemas(release)
			if err != nil {
				t.Fatal(err)
			}
			regenerated, err := Schemas(os.DirFS(moduleDir(t, release)), protoTrees(t, release), release, embedded.Source)
			if err != nil {
				t.Fatal(err)
			}
			got, err := catalog.EncodeSchemas(regenerated)
			if err != nil {
				t.Fatal(err)
			}
			want, err := catalog.EncodeSchemas(embedded)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("regenerated schemas (%d bytes) differ from the embedded ones (%d bytes); run go generate ./internal/catalog", len(got), len(want))
			}
		})
	}
}

// TestEnums reads enums from both forms of the generated definitions'
// keys: Go names (up to 1.34) and OpenAPIModelName calls (1.35 on).
func TestEnums(t *testing.T) {
	for _, release := range []string{"1.31", "1.37"} {
		t.Run(release, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(moduleDir(t, release), GeneratedOpenAPIFile))
			if err != nil {
				t.Fatal(err)
			}
			enums, err := Enums(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ def, field, value string }{
				{"io.k8s.api.core.v1.Container", "imagePullPolicy", "IfNotPresent"},
				{"io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes[]", "ReadWriteOnce"},
				{"io.k8s.api.apps.v1.DeploymentStrategy", "type", "Recreate"},
				{"io.k8s.api.core.v1.ServicePort", "protocol", "UDP"},
			} {
				if values := enums[c.def][c.field]; !slices.Contains(values, c.value) {
					t.Errorf("%s.%s enum %v lacks %s", c.def, c.field, values, c.value)
				}
			}
			n := 0
			for _, fields := range enums {
				n += len(fields)
			}
			if n < 100 {
				t.Errorf("only %d enum fields", n)
			}
		})
	}
	if _, err := Enums([]byte("package openapi\n")); err == nil {
		t.Error("a file without GetOpenAPIDefinitions was read")
	}
	if _, err := Enums([]byte("not go")); err == nil {
		t.Error("junk was read")
	}
}

func TestRESTFriendlyName(t *testing.T) {
	for goName, want := range map[string]string{
		"k8s.io/api/core/v1.Pod": "io.k8s.api.core.v1.Pod",
		"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1.JSON": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
		"example/v1.Thing": "example.v1.Thing",
	} {
		if got := restFriendlyName(goName); got != want {
			t.Errorf("restFriendlyName(%s) = %s, want %s", goName, got, want)
		}
	}
}
