package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Platform is an OS and architecture pair, as in "linux/amd64".
type Platform struct {
	OS   string
	Arch string
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// parsePlatforms reads a comma-separated list of os/arch pairs.
func parsePlatforms(list string) ([]Platform, error) {
	var out []Platform
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		osName, arch, ok := strings.Cut(item, "/")
		if !ok || osName == "" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("platform %q is not os/arch", item)
		}
		p := Platform{OS: osName, Arch: arch}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no platform given")
	}
	return out, nil
}

// hostPlatform is the platform outside binaries are taken for.
func hostPlatform() Platform { return Platform{OS: "linux", Arch: runtime.GOARCH} }

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the module root: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// goBuild builds the main packages static (CGO_ENABLED=0, stripped,
// -trimpath) for p into dir, one binary per package, named after the
// package's last element. Go cross-compiles, so every platform costs one
// compile and nothing else.
func goBuild(root, dir string, p Platform, packages []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}, packages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s for %s: %w", strings.Join(packages, " "), p, err)
	}
	return nil
}

// elfMachines maps GOARCH to the ELF machine its binaries declare.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

var errNotStatic = errors.New("not a static executable")

// checkStatic fails unless path is an ELF executable for arch with no
// program interpreter: an image with an empty base has no dynamic loader and
// no libraries, so anything else would fail to start there.
func checkStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", path, errNotStatic, err)
	}
	defer f.Close()
	if want, ok := elfMachines[arch]; !ok || f.Machine != want {
		return fmt.Errorf("%s: %w for %s: its machine is %s", path, errNotStatic, arch, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: %w: dynamically linked", path, errNotStatic)
		}
	}
	return nil
}

// busyboxPackage is the Debian package with a static busybox at /bin/busybox.
const busyboxPackage = "busybox-static"

// ensureBusybox returns path when it is a static busybox for the machine;
// for the default path it installs Debian's busybox-static first when
// needed and allowed (root with apt-get), and says so.
func ensureBusybox(path string, install bool) (string, error) {
	arch := hostPlatform().Arch
	err := checkStatic(path, arch)
	if err == nil || !install {
		return path, err
	}
	if _, lookErr := exec.LookPath("apt-get"); lookErr != nil || os.Geteuid() != 0 {
		return "", fmt.Errorf("the testkit image needs a static busybox: install the Debian package %s (as root: apt-get install %s) or pass -busybox: %w", busyboxPackage, busyboxPackage, err)
	}
	fmt.Fprintf(os.Stderr, "release: the testkit image needs a static busybox (%v); installing Debian's %s with apt-get\n", err, busyboxPackage)
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		return cmd.Run()
	}
	if apt("install", "-y", "-q", busyboxPackage) != nil {
		// A machine whose package lists were never fetched knows no packages.
		if err := apt("update", "-q"); err != nil {
			return "", fmt.Errorf("apt-get update: %w", err)
		}
		if err := apt("install", "-y", "-q", busyboxPackage); err != nil {
			return "", fmt.Errorf("apt-get install %s: %w", busyboxPackage, err)
		}
	}
	return path, checkStatic(path, arch)
}

// busyboxApplets lists the applets the busybox at path provides, as
// `busybox --list` prints them.
func busyboxApplets(path string) ([]string, error) {
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var applets []string
	for name := range strings.FieldsSeq(string(bytes.TrimSpace(out))) {
		if name != "busybox" && !strings.Contains(name, "/") {
			applets = append(applets, name)
		}
	}
	slices.Sort(applets)
	return applets, nil
}
