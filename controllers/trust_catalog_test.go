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
		r := &TrustReconciler{Cache: k8sClient, Releases: &releases.Resolver{Discovery: disco, ClusterTTL: 200 * time.Millisecond}, CatalogCheck: 200 * time.Millisecond}

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

		By("the first look sends the copies' namespaces, so they are written from the catalog it saw")
		Eventually(events, 30*time.Second).Should(Receive(WithTransform(namespaceOf, Equal(holding))))
		// The suite's own CRDs may still be reaching the OpenAPI index: once
		// it settled, nothing is sent while the API stays as it is.
		Eventually(func() bool {
			select {
			case <-events:
				return false
			case <-time.After(3 * time.Second):
				return true
			}
		}, 30*time.Second).Should(BeTrue(), "events go on while the API stays as it is")

		By("installing a custom resource")
		crd := testenv.NamespacedCRD("parts.example.net", "sprockets", "Sprocket", nil)
		_, err = envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(events, 15*time.Second).Should(Receive(WithTransform(namespaceOf, Equal(holding))))
		Eventually(func(g Gomega) {
			c, err := r.Releases.Resolve(ctx, snoopv1alpha1.ClusterRelease)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c.Operations).To(ContainElement(HaveField("ID", "listPartsExampleNetV1NamespacedSprocket")))
		}).Should(Succeed(), "the catalog the event was sent for knows the custom resource")
	})
})
