// Package fidelity checks the matcher against the real API server: real
// clients drive an envtest kube-apiserver that writes an audit log, and every
// audited request's verb and objectRef must equal what the matcher derives
// from the request line alone.
package fidelity

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

var (
	cfg        *rest.Config
	auditLog   string
	kubeconfig string
)

func TestFidelity(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fidelity Suite")
}

var _ = BeforeSuite(func() {
	cp := suite.Start(testenv.WithAuditLog())
	cfg, auditLog, kubeconfig = cp.Config, cp.AuditLog, cp.Kubeconfig
})
