package catalog

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// kubernetesSource returns the module cache directory a catalog was built
// from, skipping the test when it is not there (go generate downloads it).
func kubernetesSource(t *testing.T, c *Catalog) string {
	t.Helper()
	if testing.Short() {
		t.Skip("reads the k8s.io/kubernetes module from the module cache")
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	// k8s.io/kubernetes needs no case-escaping in module cache paths.
	dir := filepath.Join(strings.TrimSpace(string(modcache)), c.Source)
	if _, err := os.Stat(filepath.Join(dir, SwaggerFile)); err != nil {
		t.Skipf("%s not in the module cache; run go generate to download it", c.Source)
	}
	return dir
}

// TestRegenerate checks that the embedded data is what the generator
// produces from its recorded source, byte for byte, as go generate in CI
// expects.
func TestRegenerate(t *testing.T) {
	for _, release := range Releases() {
		t.Run(release, func(t *testing.T) {
			embeddedCatalog, err := Load(release)
			if err != nil {
				t.Fatal(err)
			}
			dir := kubernetesSource(t, embeddedCatalog)
			c, err := FromKubernetesSource(os.DirFS(dir), release, embeddedCatalog.Source)
			if err != nil {
				t.Fatal(err)
			}
			regenerated, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			want, err := embedded.ReadFile(path.Join("data", release+dataSuffix))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(regenerated, want) {
				t.Errorf("regenerated %d bytes differ from the embedded %d bytes; run go generate ./internal/catalog", len(regenerated), len(want))
			}
		})
	}
}
