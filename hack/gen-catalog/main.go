// Command gen-catalog writes the embedded endpoint catalogs of
// internal/catalog, one <release>.json.zst per supported release, and their
// request-body schemas, one schemas/<release>.json.zst, from the
// k8s.io/kubernetes module of each pinned patch version (downloaded into the
// module cache with go mod download), and the protobuf field numbers of the
// schemas from the generated.proto files of the matching k8s.io/api,
// k8s.io/apimachinery, k8s.io/apiextensions-apiserver and
// k8s.io/kube-aggregator modules. It is run by go generate in
// internal/catalog; its output is byte-identical on rerun.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/kubesource"
)

// pinned are the supported releases and the patch version each catalog is
// generated from. Adding a release here (and running go generate) is all it
// takes to support it.
var pinned = []struct{ Release, Version string }{
	{"1.31", "v1.31.14"},
	{"1.32", "v1.32.13"},
	{"1.33", "v1.33.13"},
	{"1.34", "v1.34.4"},
	{"1.35", "v1.35.4"},
	{"1.36", "v1.36.3"},
	{"1.37", "v1.37.2"},
}

const modulePath = "k8s.io/kubernetes"

func main() {
	out := flag.String("out", "data", "directory to write <release>.json.zst files into")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*out); err != nil {
		log.Fatalf("gen-catalog: %v", err)
	}
}

func run(out string) error {
	schemasOut := filepath.Join(out, "schemas")
	if err := os.MkdirAll(schemasOut, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	// go mod download runs outside this module so that it neither needs nor
	// touches this module's go.mod and go.sum.
	scratch, err := os.MkdirTemp("", "gen-catalog-")
	if err != nil {
		return fmt.Errorf("create scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)

	table := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(table, "release\tsource\toperations\tstable\tbeta\talpha\tdeprecated\teligible\tpending\ttests\tbytes\tbodies\ttypes\tschema bytes\t")
	written := map[string]bool{}
	for _, pin := range pinned {
		dir, err := moduleDir(scratch, modulePath, pin.Version)
		if err != nil {
			return err
		}
		// The generated.proto files of the staging modules give the
		// schemas their protobuf field numbers.
		protoVersion, err := kubesource.ProtoVersion(pin.Version)
		if err != nil {
			return err
		}
		var protos []fs.FS
		for _, module := range kubesource.ProtoModules {
			protoDir, err := moduleDir(scratch, module, protoVersion)
			if err != nil {
				return err
			}
			protos = append(protos, os.DirFS(protoDir))
		}
		source := modulePath + "@" + pin.Version
		c, err := catalog.FromKubernetesSource(os.DirFS(dir), pin.Release, source)
		if err != nil {
			return fmt.Errorf("build catalog from %s: %w", source, err)
		}
		encoded, err := catalog.Encode(c)
		if err != nil {
			return err
		}
		name := pin.Release + ".json.zst"
		if err := writeIfChanged(filepath.Join(out, name), encoded); err != nil {
			return err
		}
		written[name] = true
		schemas, err := kubesource.Schemas(os.DirFS(dir), protos, pin.Release, source)
		if err != nil {
			return fmt.Errorf("build schemas from %s: %w", source, err)
		}
		if len(schemas.Unresolved) > 0 {
			return fmt.Errorf("build schemas from %s: missing definitions %s", source, strings.Join(schemas.Unresolved, ", "))
		}
		encodedSchemas, err := catalog.EncodeSchemas(schemas)
		if err != nil {
			return err
		}
		if err := writeIfChanged(filepath.Join(schemasOut, name), encodedSchemas); err != nil {
			return err
		}
		s := c.Summary()
		fmt.Fprintf(table, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", pin.Release, pin.Version,
			s.Operations, s.Stable, s.Beta, s.Alpha, s.Deprecated, s.Eligible, s.Pending, len(c.ConformanceTests), len(encoded),
			len(schemas.Bodies), len(schemas.Types), len(encodedSchemas))
	}
	for _, dir := range []string{out, schemasOut} {
		if err := removeStale(dir, written); err != nil {
			return err
		}
	}
	return table.Flush()
}

// moduleDir downloads (or finds in the module cache) a module at version
// and returns its extracted directory.
func moduleDir(scratch, modulePath, version string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", modulePath+"@"+version)
	cmd.Dir = scratch
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	output, err := cmd.Output()
	var result struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(output, &result); jsonErr != nil && err == nil {
		err = jsonErr
	}
	if result.Error != "" {
		return "", fmt.Errorf("download %s@%s: %s", modulePath, version, result.Error)
	}
	if err != nil {
		return "", fmt.Errorf("download %s@%s: %w: %s", modulePath, version, err, strings.TrimSpace(stderr.String()))
	}
	if result.Dir == "" {
		return "", fmt.Errorf("download %s@%s: go mod download reported no directory", modulePath, version)
	}
	return result.Dir, nil
}

// writeIfChanged leaves an identical file alone, so its modification time
// does not change on a no-op regeneration.
func writeIfChanged(name string, content []byte) error {
	if existing, err := os.ReadFile(name); err == nil && bytes.Equal(existing, content) {
		return nil
	}
	if err := os.WriteFile(name, content, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// removeStale deletes catalogs of releases no longer pinned.
func removeStale(out string, written map[string]bool) error {
	stale, err := filepath.Glob(filepath.Join(out, "*.json.zst"))
	if err != nil {
		return fmt.Errorf("list catalogs: %w", err)
	}
	for _, name := range stale {
		if written[filepath.Base(name)] {
			continue
		}
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("remove stale catalog: %w", err)
		}
	}
	return nil
}
