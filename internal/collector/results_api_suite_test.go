package collector_test

import (
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// sharedControlPlane is the package's one envtest environment, started by
// the first test that asks for it and stopped by TestMain.
var sharedControlPlane testenv.Shared

func TestMain(m *testing.M) { sharedControlPlane.Main(m) }
