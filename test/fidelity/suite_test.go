// Package fidelity checks the matcher against the real API server: real
// clients drive an envtest kube-apiserver that writes an audit log, and every
// audited request's verb and objectRef must equal what the matcher derives
// from the request line alone.
package fidelity

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

var (
	testEnv    *envtest.Environment
	cfg        *rest.Config
	auditLog   string
	kubeconfig string
)

func TestFidelity(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fidelity Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	dir := GinkgoT().TempDir()
	var err error
	testEnv, err = testenv.New()
	Expect(err).NotTo(HaveOccurred())
	auditLog, err = testenv.EnableAuditLog(testEnv, dir)
	Expect(err).NotTo(HaveOccurred())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	user, err := testEnv.AddUser(envtest.User{Name: "fidelity-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	data, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, data, 0o600)).To(Succeed())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
