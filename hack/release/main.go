// Command release builds kube-apisnoop's release artifacts without a Docker
// engine.
//
//	release image  OCI image archives of the images in Images, from our
//	               static binaries on an empty base (`make image`)
//	release dist   kubectl-snoop archives for krew, SHA256SUMS and the
//	               filled krew manifest (`make dist`)
//
// Both write the same bytes for the same sources and flags: every timestamp
// is -created (SOURCE_DATE_EPOCH), every owner root, every listing sorted.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: release image|dist [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = runImage(os.Args[2:])
	case "dist":
		err = runDist(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want image or dist", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// sourceDateEpoch is the default for -created: SOURCE_DATE_EPOCH, else 0.
func sourceDateEpoch() int64 {
	n, _ := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	return n
}

func runImage(args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	var (
		o         BuildOptions
		images    = fs.String("images", strings.Join(imageNames(), ","), "Images to build, comma-separated")
		platforms = fs.String("platforms", "linux/amd64,linux/arm64", "Platforms of the images with our binaries; images with outside binaries (the testkit) are for this machine's only")
		created   = fs.Int64("created", sourceDateEpoch(), "Timestamp of everything in the images, in seconds since 1970 (SOURCE_DATE_EPOCH)")
	)
	fs.StringVar(&o.Out, "out", "bin/images", "Directory for the <image>.tar archives")
	fs.StringVar(&o.Repo, "repo", "apisnoop.dev", "Registry and path prefix of the image references")
	fs.StringVar(&o.Tag, "tag", "dev", "Tag of the image references")
	fs.StringVar(&o.Meta.Version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&o.Meta.Revision, "revision", "unknown", "org.opencontainers.image.revision")
	fs.StringVar(&o.Meta.Source, "source", "https://apisnoop.dev/kube-apisnoop", "org.opencontainers.image.source")
	fs.StringVar(&o.Kubectl, "kubectl", "", "Static kubectl for this machine, for the testkit image (hack/build-control-plane.sh kubectl builds one)")
	fs.StringVar(&o.Busybox, "busybox", "/bin/busybox", "Static busybox for this machine, for the testkit image; the default path is installed from Debian's busybox-static when missing")
	_ = fs.Parse(args)
	var err error
	if o.Platforms, err = parsePlatforms(*platforms); err != nil {
		return err
	}
	for name := range strings.SplitSeq(*images, ",") {
		if name = strings.TrimSpace(name); name != "" {
			o.Images = append(o.Images, name)
		}
	}
	o.InstallBusybox = o.Busybox == "/bin/busybox"
	o.Created = time.Unix(*created, 0).UTC()
	o.Log = os.Stdout
	built, err := Build(o)
	if err != nil {
		return err
	}
	fmt.Println("Import on a node with: ctr -n k8s.io images import --all-platforms FILE (pods: imagePullPolicy: Never)")
	for _, b := range built {
		abs, _ := filepath.Abs(b.Archive)
		fmt.Printf("  %s\n", abs)
	}
	return nil
}

func runDist(args []string) error {
	fs := flag.NewFlagSet("dist", flag.ExitOnError)
	var (
		o         DistOptions
		platforms = fs.String("platforms", DistPlatforms, "Platforms to build kubectl-snoop for")
		created   = fs.Int64("created", sourceDateEpoch(), "Timestamp of the archives' files, in seconds since 1970 (SOURCE_DATE_EPOCH)")
	)
	fs.StringVar(&o.Out, "out", "bin/dist", "Directory for the archives, SHA256SUMS and snoop.yaml")
	fs.StringVar(&o.Version, "version", "dev", "Release version; krew's spec.version is derived from it")
	fs.StringVar(&o.ReleaseURL, "release-url", "", "Where the archives are published; each uri is this plus /<archive> (default https://apisnoop.dev/kube-apisnoop/releases/download/<version>)")
	fs.StringVar(&o.Manifest, "manifest", "plugins/snoop.yaml", "krew manifest template")
	_ = fs.Parse(args)
	var err error
	if o.Platforms, err = parsePlatforms(*platforms); err != nil {
		return err
	}
	if o.ReleaseURL == "" {
		o.ReleaseURL = "https://apisnoop.dev/kube-apisnoop/releases/download/" + o.Version
	}
	o.Created = time.Unix(*created, 0).UTC()
	o.Log = os.Stdout
	_, err = Dist(o)
	return err
}
