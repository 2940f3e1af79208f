package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"
)

// Plugin is the kubectl plugin `make dist` packs: the binary krew installs
// as `kubectl snoop`.
const (
	pluginName    = "snoop"
	pluginBinary  = "kubectl-snoop"
	pluginPackage = "./cmd/kubectl-snoop"
)

// DistPlatforms are the platforms kubectl-snoop is released for.
const DistPlatforms = "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64"

// pluginDocs are the files from the module root that go into every archive
// beside the binary, where present.
var pluginDocs = []string{"LICENSE", "README.md"}

// DistOptions say where the archives go and how the manifest names them.
type DistOptions struct {
	Out     string
	Version string
	// ReleaseURL is the directory the archives are published in; each
	// platform's uri is ReleaseURL/<archive>.
	ReleaseURL string
	// Manifest is the krew manifest template (plugins/snoop.yaml).
	Manifest  string
	Platforms []Platform
	Created   time.Time
	Log       io.Writer
}

// Archive is one platform's release archive.
type Archive struct {
	Platform Platform
	File     string
	SHA256   string
}

// archiveName is the archive's file name for p.
func archiveName(p Platform) string {
	return fmt.Sprintf("%s_%s_%s.tar.gz", pluginBinary, p.OS, p.Arch)
}

// Dist builds kubectl-snoop for every platform, packs each build with the
// docs into a tar.gz, writes SHA256SUMS and fills the krew manifest into
// Out/snoop.yaml.
func Dist(o DistOptions) ([]Archive, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	var docs []string
	for _, name := range pluginDocs {
		if _, err := os.Stat(filepath.Join(root, name)); err == nil {
			docs = append(docs, filepath.Join(root, name))
		}
	}
	var archives []Archive
	var sums strings.Builder
	for _, p := range o.Platforms {
		dir := filepath.Join(o.Out, ".bin", p.OS+"_"+p.Arch)
		if err := goBuild(root, dir, p, []string{pluginPackage}); err != nil {
			return nil, err
		}
		data, err := pluginArchive(filepath.Join(dir, pluginBinary), docs, o.Created)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", p, err)
		}
		file := filepath.Join(o.Out, archiveName(p))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		a := Archive{Platform: p, File: file, SHA256: hex.EncodeToString(sum[:])}
		archives = append(archives, a)
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, filepath.Base(file))
		if o.Log != nil {
			fmt.Fprintf(o.Log, "%s  %s\n", file, mib(int64(len(data))))
		}
	}
	if err := os.WriteFile(filepath.Join(o.Out, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		return nil, err
	}
	tmpl, err := os.ReadFile(o.Manifest)
	if err != nil {
		return nil, err
	}
	manifest, err := pluginManifest(string(tmpl), o.Version, o.ReleaseURL, archives)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(o.Out, pluginName+".yaml")
	if err := os.WriteFile(out, manifest, 0o644); err != nil {
		return nil, err
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "%s\n%s (krew manifest, from %s)\n", filepath.Join(o.Out, "SHA256SUMS"), out, o.Manifest)
	}
	return archives, nil
}

// pluginArchive packs the binary (0755) and the docs (0644) at the root of
// a tar.gz with fixed owners and times, so the same inputs give the same
// checksum.
func pluginArchive(binary string, docs []string, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	add := func(file string, mode int64) error {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.Base(file), Mode: mode, Size: int64(len(data)), ModTime: created,
			Typeflag: tar.TypeReg, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	if err := add(binary, 0o755); err != nil {
		return nil, err
	}
	for _, doc := range docs {
		if err := add(doc, 0o644); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// krewVersion is the manifest's spec.version, which krew wants as semver
// with a leading v: a release version keeps its number, any other build
// (`git describe` of an untagged commit) becomes a v0.0.0 pre-release.
func krewVersion(v string) (string, error) {
	if _, err := version.ParseSemantic(v); err == nil {
		return "v" + strings.TrimPrefix(v, "v"), nil
	}
	clean := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' {
			return r
		}
		return '-'
	}, v)
	kv := "v0.0.0-git" + clean
	if _, err := version.ParseSemantic(kv); err != nil {
		return "", fmt.Errorf("version %q gives no semantic version for krew: %w", v, err)
	}
	return kv, nil
}

// manifestPlatform is one platforms entry the template renders.
type manifestPlatform struct {
	OS, Arch, URI, SHA256, Bin string
}

// krewPlugin is the part of a krew Plugin manifest that pluginManifest
// checks after rendering.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version   string `json:"version"`
		Platforms []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

var errManifest = errors.New("krew manifest")

// pluginManifest renders the krew manifest template for the archives and
// checks that the result is a krew Plugin listing each archive once, with
// its checksum.
func pluginManifest(tmpl, ver, releaseURL string, archives []Archive) ([]byte, error) {
	kv, err := krewVersion(ver)
	if err != nil {
		return nil, err
	}
	t, err := template.New("manifest").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("parse %w template: %w", errManifest, err)
	}
	data := struct {
		Version   string
		Platforms []manifestPlatform
	}{Version: kv}
	for _, a := range archives {
		data.Platforms = append(data.Platforms, manifestPlatform{
			OS: a.Platform.OS, Arch: a.Platform.Arch, SHA256: a.SHA256, Bin: pluginBinary,
			URI: strings.TrimSuffix(releaseURL, "/") + "/" + archiveName(a.Platform),
		})
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("render %w: %w", errManifest, err)
	}
	var p krewPlugin
	if err := yaml.Unmarshal(out.Bytes(), &p); err != nil {
		return nil, fmt.Errorf("%w is not YAML: %w", errManifest, err)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != pluginName {
		return nil, fmt.Errorf("%w: want a krew v1alpha2 Plugin named %s, have %s %s %s", errManifest, pluginName, p.APIVersion, p.Kind, p.Metadata.Name)
	}
	if p.Spec.Version != kv {
		return nil, fmt.Errorf("%w: spec.version is %q, want %q", errManifest, p.Spec.Version, kv)
	}
	if len(p.Spec.Platforms) != len(data.Platforms) {
		return nil, fmt.Errorf("%w: %d platforms, want %d", errManifest, len(p.Spec.Platforms), len(data.Platforms))
	}
	for i, want := range data.Platforms {
		have := p.Spec.Platforms[i]
		if have.Selector.MatchLabels["os"] != want.OS || have.Selector.MatchLabels["arch"] != want.Arch ||
			have.URI != want.URI || have.SHA256 != want.SHA256 || have.Bin != want.Bin {
			return nil, fmt.Errorf("%w: platform %d is %+v, want %+v", errManifest, i, have, want)
		}
	}
	return out.Bytes(), nil
}
