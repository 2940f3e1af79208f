package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// untar unpacks the archive file into dir.
func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	eachTarEntry(t, f, func(hdr *tar.Header, body io.Reader) {
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		var err error
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(body); err == nil {
				err = os.WriteFile(p, data, 0o644)
			}
		default:
			t.Fatalf("archive entry %s has type %c", hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
}

// eachTarEntry calls each with every entry of the tar stream r, in order,
// and its contents.
func eachTarEntry(t testing.TB, r io.Reader, each func(hdr *tar.Header, body io.Reader)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		each(hdr, tr)
	}
}

// TestBuildSnoopProxy builds the snoop-proxy image for linux/amd64 and
// reads it back as containerd would: an OCI layout whose index.json names
// the image, a platform index, one image with the config of Images and a
// layer holding exactly the static /snoop-proxy.
func TestBuildSnoopProxy(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	meta := Meta{Version: "v1.2.3", Revision: "0123abc", Source: "https://example.test/src"}
	opts := BuildOptions{
		Out:       t.TempDir(),
		Images:    []string{"snoop-proxy"},
		Repo:      "registry.test/apisnoop",
		Tag:       "t1",
		Meta:      meta,
		Created:   created,
		Platforms: []Platform{{OS: "linux", Arch: "amd64"}},
	}
	built, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || filepath.Base(built[0].Archive) != "snoop-proxy.tar" {
		t.Fatalf("built %+v, want snoop-proxy.tar", built)
	}
	spec, _ := imageNamed("snoop-proxy")

	dir := t.TempDir()
	untar(t, built[0].Archive, dir)
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topManifest.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(topManifest.Manifests))
	}
	named := topManifest.Manifests[0]
	if got := named.Annotations[annotationContainerdName]; got != "registry.test/apisnoop/snoop-proxy:t1" {
		t.Errorf("%s = %q", annotationContainerdName, got)
	}
	if got := named.Annotations[annotationRefName]; got != "t1" {
		t.Errorf("%s = %q", annotationRefName, got)
	}
	idx, err := top.ImageIndex(named.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("the platform index does not validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil ||
		im.Manifests[0].Platform.OS != "linux" || im.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("platform index lists %+v, want one linux/amd64 image", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(created) {
		t.Errorf("config os/arch/created = %s/%s/%s", cf.OS, cf.Architecture, cf.Created.Time)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/snoop-proxy"}) || !slices.Equal(cf.Config.Entrypoint, spec.Entrypoint) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q", cf.Config.User)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":       "snoop-proxy",
		"org.opencontainers.image.description": spec.Description,
		"org.opencontainers.image.source":      meta.Source,
		"org.opencontainers.image.version":     meta.Version,
		"org.opencontainers.image.revision":    meta.Revision,
	}
	if !maps.Equal(cf.Config.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", cf.Config.Labels, wantLabels)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	files := layerFiles(t, layers[0])
	if len(files) != 1 {
		t.Fatalf("layer holds %v, want only snoop-proxy", slices.Sorted(maps.Keys(files)))
	}
	hdr, ok := files["snoop-proxy"]
	if !ok || hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o755 || hdr.Uid != 0 || !hdr.ModTime.Equal(created) {
		t.Fatalf("layer entry %+v, want the regular file snoop-proxy, 0755, root's, at %s", hdr, created)
	}
	bin, err := elf.NewFile(bytes.NewReader(files["snoop-proxy"].data))
	if err != nil {
		t.Fatal(err)
	}
	if bin.Machine != elf.EM_X86_64 || slices.ContainsFunc(bin.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Errorf("/snoop-proxy is not a static amd64 executable")
	}

	// The same sources and options give the same bytes.
	opts.Out = t.TempDir()
	again, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(built[0].Archive)
	b, _ := os.ReadFile(again[0].Archive)
	if !bytes.Equal(a, b) {
		t.Error("a second build of the same image gave different bytes")
	}
}

type layerFile struct {
	*tar.Header
	data []byte
}

func layerFiles(t *testing.T, l v1.Layer) map[string]layerFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	eachTarEntry(t, rc, func(hdr *tar.Header, body io.Reader) {
		data, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = layerFile{Header: hdr, data: data}
	})
	return files
}

func TestLayerTarAddsParentsAndLinks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!"), 0o600); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0).UTC()
	entries := []entry{{Path: "/bin/tool", Source: src}, {Path: "/bin/sh", Link: "/bin/tool"}}
	data, err := layerTar(append(parentDirs(entries), entries...), created)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	eachTarEntry(t, bytes.NewReader(data), func(hdr *tar.Header, _ io.Reader) {
		got = append(got, string(hdr.Typeflag)+" "+hdr.Name+" "+hdr.Linkname)
	})
	want := []string{"5 bin/ ", "2 bin/sh /bin/tool", "0 bin/tool "}
	if !slices.Equal(got, want) {
		t.Errorf("layer entries %q, want %q", got, want)
	}
}

func TestCheckStatic(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary is built with cgo where available, so it may or may
	// not be static; a text file is neither.
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(text, "amd64"); !errors.Is(err, errNotStatic) {
		t.Errorf("checkStatic(script) = %v, want errNotStatic", err)
	}
	if err := checkStatic(exe, "s390x"); !errors.Is(err, errNotStatic) {
		t.Errorf("checkStatic(test binary, s390x) = %v, want errNotStatic", err)
	}
}

func TestParsePlatforms(t *testing.T) {
	got, err := parsePlatforms("linux/amd64, linux/arm64,linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Platform{{"linux", "amd64"}, {"linux", "arm64"}}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "linux", "linux/arm/v7", "/amd64"} {
		if _, err := parsePlatforms(bad); err == nil {
			t.Errorf("parsePlatforms(%q) did not fail", bad)
		}
	}
}
