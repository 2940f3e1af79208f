package controllers

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/event"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var _ = Describe("The trust controller's catalog follower", func() {
	It("sends the namespaces holding a catalog copy when the cluster's API changes, and only those, and only then", func() {
		disco, err := discovery.NewDiscoveryClientForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		// The shared cache never expires within the test: Resolve returns
		// what the follower's own look (CheckCluster) read last, the catalog
		// its event was sent for.
		r := &TrustReconciler{Cache: k8sClient, Releases: &releases.Resolver{Discovery: disco, ClusterTTL: time.Hour}, CatalogCheck: 200 * time.Millisecond}

		holding, other := suite.Namespace(controlPlane, "copy", nil), suite.Namespace(controlPlane, "nocopy", nil)
		copyOf := func(ns, name string) *corev1.ConfigMap {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels: map[string]string{snoopv1alpha1.ManagedByLabel: snoopv1alpha1.ManagedByValue}}}
		}
		Expect(k8sClient.Create(ctx, copyOf(holding, webhook.CatalogConfigMap))).To(Succeed())
		Expect(k8sClient.Create(ctx, copyOf(other, webhook.TrustBundleConfigMap))).To(Succeed())

		events := make(chan event.GenericEvent, 16)
		followCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go func() { _ = r.followCatalog(followCtx, events) }()
		namespaceOf := func(e event.GenericEvent) string { return e.Object.GetName() }
		// Every event names the namespace holding a copy, never another.
		onlyHolding := WithTransform(namespaceOf, Equal(holding))

		By("the first look sends the copies' namespaces, so they are written from the catalog it saw")
		var e event.GenericEvent
		Eventually(events, 30*time.Second).Should(Receive(&e))
		Expect(e).To(onlyHolding)
		// The suite's own CRDs may still be reaching the OpenAPI index: once
		// it settled, nothing is sent while the API stays as it is.
		Eventually(func() bool {
			select {
			case e := <-events:
				Expect(e).To(onlyHolding)
				return false
			case <-time.After(3 * time.Second):
				return true
			}
		}, 30*time.Second).Should(BeTrue(), "events go on while the API stays as it is")

		By("installing a custom resource")
		crd := testenv.NamespacedCRD("parts.example.net", "sprockets", "Sprocket", nil)
		_, err = envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}})
		Expect(err).NotTo(HaveOccurred())
		// An event is sent for each catalog the follower sees change, the
		// custom resource's OpenAPI may come a moment after: events go on
		// until the catalog knows it.
		Eventually(func(g Gomega) {
			var e event.GenericEvent
			g.Expect(events).To(Receive(&e))
			Expect(e).To(onlyHolding)
			c, err := r.Releases.Resolve(ctx, snoopv1alpha1.ClusterRelease)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c.Operations).To(ContainElement(HaveField("ID", "listPartsExampleNetV1NamespacedSprocket")))
		}, 15*time.Second, 100*time.Millisecond).Should(Succeed(), "no event for a catalog that knows the custom resource")
	})
})
