package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BuildOptions say which images to build and how to name and label them.
type BuildOptions struct {
	// Out receives <name>.tar for every image.
	Out string
	// Images names the images to build, from Images.
	Images []string
	// Repo prefixes every image name: Repo/<name>:Tag.
	Repo string
	Tag  string
	Meta Meta
	// Created is every timestamp in the images: configs, history, files.
	Created time.Time
	// Platforms the images with our own binaries are built for; those with
	// outside binaries are built for the machine's platform alone.
	Platforms []Platform
	// Kubectl and Busybox are static binaries for the machine's platform.
	Kubectl, Busybox string
	// InstallBusybox lets the build install Debian's busybox-static.
	InstallBusybox bool
	// Log receives one summary per image.
	Log io.Writer
}

// Built is one image archive that Build wrote.
type Built struct {
	Image   Image
	Ref     string
	Archive string
	Index   v1.ImageIndex
}

// Build compiles our commands for every platform and writes one OCI image
// archive per image.
func Build(o BuildOptions) ([]Built, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	var specs []Image
	for _, name := range o.Images {
		img, ok := imageNamed(name)
		if !ok {
			return nil, fmt.Errorf("no image %q: have %s", name, strings.Join(imageNames(), ", "))
		}
		specs = append(specs, img)
	}

	// Our binaries: each platform's packages in one go build.
	bins := filepath.Join(o.Out, ".bin")
	binary := map[Platform]map[string]string{}
	for _, p := range o.Platforms {
		var packages []string
		for _, img := range specs {
			for _, f := range img.Files {
				if f.Package != "" && !slices.Contains(packages, f.Package) {
					packages = append(packages, f.Package)
				}
			}
		}
		if len(packages) == 0 {
			continue
		}
		dir := filepath.Join(bins, p.OS+"_"+p.Arch)
		if err := goBuild(root, dir, p, packages); err != nil {
			return nil, err
		}
		binary[p] = map[string]string{}
		for _, pkg := range packages {
			binary[p][path.Base(pkg)] = filepath.Join(dir, path.Base(pkg))
		}
	}
	// Outside binaries, for the machine's platform.
	host := hostPlatform()
	outside := map[string]string{}
	for _, img := range specs {
		for _, f := range img.Files {
			if f.Package != "" {
				continue
			}
			if _, done := outside[f.Binary]; done {
				continue
			}
			var p string
			switch f.Binary {
			case "kubectl":
				p = o.Kubectl
				if err := checkStatic(p, host.Arch); err != nil {
					return nil, fmt.Errorf("kubectl for the %s image (build it with hack/build-control-plane.sh kubectl): %w", img.Name, err)
				}
			case "busybox":
				if p, err = ensureBusybox(o.Busybox, o.InstallBusybox); err != nil {
					return nil, err
				}
			default:
				return nil, fmt.Errorf("image %s: no source for binary %s", img.Name, f.Binary)
			}
			outside[f.Binary] = p
		}
	}

	var built []Built
	for _, img := range specs {
		platforms := o.Platforms
		if img.Outside() {
			platforms = []Platform{host}
		}
		cfg := v1.Config{
			Entrypoint: img.Entrypoint,
			Env:        img.Env,
			User:       User,
			WorkingDir: "/",
			Labels:     img.Labels(o.Meta),
		}
		images := map[Platform]v1.Image{}
		for _, p := range platforms {
			var entries []entry
			for _, f := range img.Files {
				src := outside[f.Binary]
				if f.Package != "" {
					src = binary[p][f.Binary]
					if err := checkStatic(src, p.Arch); err != nil {
						return nil, err
					}
				}
				entries = append(entries, entry{Path: f.Path, Source: src})
			}
			if img.AppletDir != "" {
				applets, err := busyboxApplets(outside["busybox"])
				if err != nil {
					return nil, err
				}
				for _, a := range applets {
					p := path.Join(img.AppletDir, a)
					if !slices.ContainsFunc(entries, func(e entry) bool { return e.Path == p }) {
						entries = append(entries, entry{Path: p, Link: "/bin/busybox"})
					}
				}
			}
			createdBy := "hack/release image " + img.Name
			pi, err := platformImage(p, entries, cfg, o.Created, createdBy)
			if err != nil {
				return nil, fmt.Errorf("image %s for %s: %w", img.Name, p, err)
			}
			images[p] = pi
		}
		idx := platformIndex(images, platforms)
		ref := o.Repo + "/" + img.Name + ":" + o.Tag
		archive := filepath.Join(o.Out, img.Name+".tar")
		if err := writeArchive(archive, ref, idx, o.Created); err != nil {
			return nil, err
		}
		b := Built{Image: img, Ref: ref, Archive: archive, Index: idx}
		if o.Log != nil {
			if err := b.summarize(o.Log); err != nil {
				return nil, err
			}
		}
		built = append(built, b)
	}
	return built, nil
}

// summarize prints the archive's size and, per platform, the image's
// digest, what a registry or containerd stores (compressed: manifest,
// config, layer) and what the files take unpacked.
func (b Built) summarize(w io.Writer) error {
	info, err := os.Stat(b.Archive)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s  %s  %s\n", b.Ref, b.Archive, mib(info.Size()))
	im, err := b.Index.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range im.Manifests {
		img, err := b.Index.Image(desc.Digest)
		if err != nil {
			return err
		}
		m, err := img.Manifest()
		if err != nil {
			return err
		}
		compressed := desc.Size + m.Config.Size
		var unpacked int64
		for _, l := range m.Layers {
			compressed += l.Size
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
			unpacked += n
		}
		fmt.Fprintf(w, "  %-12s %s  compressed %s, unpacked %s\n", desc.Platform.OS+"/"+desc.Platform.Architecture, desc.Digest, mib(compressed), mib(unpacked))
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
