package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Kubectl finds a kubectl binary: "kubectl" for the default one, or a
// versioned one like "kubectl.1.27", which the machine image keeps beside the
// real file the default kubectl links to.
func Kubectl(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	def, err := exec.LookPath("kubectl")
	if err != nil {
		return "", fmt.Errorf("find %s: no kubectl on PATH", name)
	}
	real, err := filepath.EvalSymlinks(def)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	path := filepath.Join(filepath.Dir(real), name)
	if info, err := os.Stat(path); err != nil || info.IsDir() {
		return "", fmt.Errorf("find %s: not beside %s", name, real)
	}
	return path, nil
}
