package collector_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// The package's one envtest environment, started by the first test that
// asks for it (tests of pure logic do not wait for a control plane) and
// stopped by TestMain. The tests are outside package collector because
// testenv imports the manager, which imports collector.
var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

// controlPlane returns the package's API server, starting it if need be.
func controlPlane(t testing.TB) *rest.Config {
	t.Helper()
	envOnce.Do(func() {
		env, envErr = testenv.New()
		if envErr != nil {
			return
		}
		envCfg, envErr = env.Start()
	})
	if envErr != nil {
		t.Fatalf("start the control plane: %v", envErr)
	}
	return envCfg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if envCfg != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop the control plane: %v\n", err)
		}
	}
	os.Exit(code)
}
