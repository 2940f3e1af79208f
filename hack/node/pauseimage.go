package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pausePackage is the Go package of the sandbox binary, relative to the
// module root.
const pausePackage = "./hack/node/pause"

// WritePauseImage builds the pause command static for this machine and
// writes an image archive (the `docker save` layout, which `ctr images
// import` reads) holding it as /pause, its entrypoint, named ref. Every
// timestamp is created, so the same sources give the same bytes.
func WritePauseImage(out, ref string, created time.Time) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("parse image reference: %w", err)
	}
	bin, err := os.MkdirTemp("", "apisnoop-node-pause-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	binary := filepath.Join(bin, "pause")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, pausePackage)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build %s: %w", pausePackage, err)
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	layerTar, err := singleFileTar("pause", data, created)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/node pause-image"},
	})
	if err != nil {
		return fmt.Errorf("add layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{Entrypoint: []string{"/pause"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// singleFileTar returns a tar stream with one executable, owned by root.
func singleFileTar(name string, data []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)),
		ModTime: created, Uname: "root", Gname: "root", Format: tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
