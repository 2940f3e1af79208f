package main

import (
	"maps"
	"slices"
)

// The images' contents and settings are defined here once. The Dockerfile
// repeats them for Docker builds; dockerfile_test.go checks it against
// these values, so the two cannot drift apart.

// User is every image's user and group: the conventional "nonroot" 65532 of
// distroless images. The redirect init container runs `/apisnoop iptables`
// as root all the same: its pod securityContext, set by the webhook, says
// so, and the injected sidecar runs as webhook.ProxyUID the same way.
const User = "65532:65532"

// Names of the Dockerfile build arguments that carry the labels whose values
// change from build to build.
const (
	argVersion  = "VERSION"
	argRevision = "REVISION"
	argSource   = "SOURCE"
)

// File is one regular file of an image.
type File struct {
	// Path is where the file is in the image.
	Path string
	// Binary names the executable: one of our commands (cmd/<Binary>,
	// built static for each platform) when Package is set, else a static
	// binary that comes from outside (kubectl, busybox).
	Binary string
	// Package is the Go main package that builds Binary.
	Package string
}

// Image is one of the images the project ships.
type Image struct {
	// Name is the image's repository name under the registry prefix and
	// the archive's file name: bin/images/<Name>.tar.
	Name        string
	Description string
	Files       []File
	// AppletDir, when set, gets a symbolic link to /bin/busybox for every
	// busybox applet, as `busybox --install -s AppletDir` makes them.
	AppletDir  string
	Entrypoint []string
	Env        []string
}

// Images lists what `make image` builds, in that order.
var Images = []Image{
	{
		Name: "apisnoop",
		Description: "kube-apisnoop: the operator (apisnoop manager), the redirect init container " +
			"(apisnoop iptables) and the recording sidecar (/snoop-proxy) that the webhook injects",
		Files: []File{
			{Path: "/apisnoop", Binary: "apisnoop", Package: "./cmd/apisnoop"},
			{Path: "/snoop-proxy", Binary: "snoop-proxy", Package: "./cmd/snoop-proxy"},
		},
		Entrypoint: []string{"/apisnoop"},
	},
	{
		Name: "snoop-proxy",
		Description: "kube-apisnoop's recording proxy alone: a small sidecar image for env-mode sessions " +
			"(the iptables mode's init container runs /apisnoop from the apisnoop image)",
		Files: []File{
			{Path: "/snoop-proxy", Binary: "snoop-proxy", Package: "./cmd/snoop-proxy"},
		},
		Entrypoint: []string{"/snoop-proxy"},
	},
	{
		Name:        "apisnoop-testkit",
		Description: "kube-apisnoop's test workload: a static kubectl and a busybox shell",
		Files: []File{
			{Path: "/bin/busybox", Binary: "busybox"},
			{Path: "/bin/kubectl", Binary: "kubectl"},
		},
		AppletDir:  "/bin",
		Entrypoint: []string{"/bin/kubectl"},
		Env:        []string{"PATH=/bin"},
	},
}

// Outside reports whether an image carries binaries that are not ours; those
// are built for the machine's own architecture only.
func (img Image) Outside() bool {
	return slices.ContainsFunc(img.Files, func(f File) bool { return f.Package == "" })
}

// Meta is what differs from one build of the images to the next.
type Meta struct {
	Version  string
	Revision string
	Source   string
}

// Labels are the image's org.opencontainers.image.* annotations, set as
// config labels.
func (img Image) Labels(m Meta) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       img.Name,
		"org.opencontainers.image.description": img.Description,
		"org.opencontainers.image.source":      m.Source,
		"org.opencontainers.image.version":     m.Version,
		"org.opencontainers.image.revision":    m.Revision,
	}
}

// imageNamed returns the image called name.
func imageNamed(name string) (Image, bool) {
	i := slices.IndexFunc(Images, func(img Image) bool { return img.Name == name })
	if i < 0 {
		return Image{}, false
	}
	return Images[i], true
}

// imageNames lists the names of Images.
func imageNames() []string {
	names := make([]string, 0, len(Images))
	for _, img := range Images {
		names = append(names, img.Name)
	}
	return names
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
