// Package suite sets up every Ginkgo envtest suite the same way: its logs,
// its Eventually and Consistently defaults, its control plane. It is apart
// from package testenv so that the demo, which uses testenv, does not link
// Ginkgo.
package suite

import (
	"context"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

const (
	// EventuallyTimeout is how long a spec waits for a controller, a
	// webhook or the manager to act: long enough for a whole manager
	// starting on a loaded two-core machine.
	EventuallyTimeout = 30 * time.Second
	// PollingInterval is how often Eventually and Consistently ask the
	// API server: often enough not to slow specs down, seldom enough not
	// to load it.
	PollingInterval = 100 * time.Millisecond
	// ConsistentlyDuration is how long Consistently watches when a spec
	// does not say: ten polls, not Gomega's one or two at this interval.
	ConsistentlyDuration = time.Second
)

// Configure sends controller-runtime's logs to GinkgoWriter, which shows
// them for failed specs only, and sets the Eventually and Consistently
// defaults. Start calls it; a suite that starts its control plane another
// way calls it from BeforeSuite itself.
func Configure() {
	logf.SetLogger(zap.New(zap.WriteTo(ginkgo.GinkgoWriter), zap.UseDevMode(true)))
	gomega.SetDefaultEventuallyTimeout(EventuallyTimeout)
	gomega.SetDefaultEventuallyPollingInterval(PollingInterval)
	gomega.SetDefaultConsistentlyDuration(ConsistentlyDuration)
	gomega.SetDefaultConsistentlyPollingInterval(PollingInterval)
}

// Start configures the suite and starts its control plane, which it stops
// after the suite, once every AfterSuite has run (so that what they stop,
// such as a manager, still has its API server). Call it from BeforeSuite.
func Start(opts ...testenv.Option) *testenv.ControlPlane {
	ginkgo.GinkgoHelper()
	Configure()
	cp, err := testenv.Start(opts...)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ginkgo.DeferCleanup(func() {
		gomega.Expect(cp.Stop()).To(gomega.Succeed())
	})
	return cp
}

// Namespace creates a fresh namespace (see ControlPlane.Namespace) and
// deletes it when the spec or container that asked for it ends.
func Namespace(cp *testenv.ControlPlane, prefix string, labels map[string]string) string {
	ginkgo.GinkgoHelper()
	ns, err := cp.Namespace(context.Background(), prefix, labels)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ginkgo.DeferCleanup(func() {
		// envtest runs no namespace controller: the namespace stays,
		// Terminating, and takes no new objects.
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		gomega.Expect(client.IgnoreNotFound(cp.Client.Delete(context.Background(), obj))).To(gomega.Succeed())
	})
	return ns
}
