package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestKrewVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v0.1.0", "v0.1.0"},
		{"v1.2.3-rc.1", "v1.2.3-rc.1"},
		{"13e1e2b", "v0.0.0-git13e1e2b"},
		{"13e1e2b-dirty", "v0.0.0-git13e1e2b-dirty"},
		{"0123456", "v0.0.0-git0123456"},
		{"v0.1.0-3-gabcdef0-dirty", "v0.1.0-3-gabcdef0-dirty"},
		{"1.2.3", "v1.2.3"},
	} {
		got, err := krewVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("krewVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestPluginManifest renders plugins/snoop.yaml for the four release
// platforms and reads it back as a krew Plugin.
func TestPluginManifest(t *testing.T) {
	tmpl, err := os.ReadFile("../../plugins/snoop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	platforms, err := parsePlatforms(DistPlatforms)
	if err != nil {
		t.Fatal(err)
	}
	var archives []Archive
	for i, p := range platforms {
		archives = append(archives, Archive{Platform: p, SHA256: strings.Repeat(string(rune('a'+i)), 64)})
	}
	out, err := pluginManifest(string(tmpl), "v0.3.0", "https://example.test/releases/download/v0.3.0/", archives)
	if err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Version != "v0.3.0" || len(p.Spec.Platforms) != 4 {
		t.Fatalf("manifest:\n%s", out)
	}
	darwinArm := p.Spec.Platforms[3]
	if darwinArm.Selector.MatchLabels["os"] != "darwin" || darwinArm.Selector.MatchLabels["arch"] != "arm64" ||
		darwinArm.URI != "https://example.test/releases/download/v0.3.0/kubectl-snoop_darwin_arm64.tar.gz" ||
		darwinArm.SHA256 != strings.Repeat("d", 64) || darwinArm.Bin != "kubectl-snoop" {
		t.Errorf("darwin/arm64 entry %+v", darwinArm)
	}

	if _, err := pluginManifest("kind: Plugin\n", "v0.3.0", "https://example.test", archives); !errors.Is(err, errManifest) {
		t.Errorf("a manifest without platforms gave %v, want errManifest", err)
	}
}

func TestPluginArchive(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, pluginBinary)
	readme := filepath.Join(dir, "README.md")
	if err := os.WriteFile(bin, []byte("binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte("# read me"), 0o600); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0).UTC()
	a, err := pluginArchive(bin, []string{readme}, created)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pluginArchive(bin, []string{readme}, created)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same inputs gave different archives")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	eachTarEntry(t, zr, func(hdr *tar.Header, _ io.Reader) {
		got = append(got, hdr.Name+" "+os.FileMode(hdr.Mode).String())
	})
	if want := []string{"kubectl-snoop -rwxr-xr-x", "README.md -rw-r--r--"}; !slices.Equal(got, want) {
		t.Errorf("archive holds %q, want %q", got, want)
	}
}
