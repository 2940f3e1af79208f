package manager_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/manager"
)

var _ = Describe("What the operator makes in its namespace", func() {
	It("names the operator's service account as its owner, so that the garbage collector deletes it with the installation", func() {
		sa := &corev1.ServiceAccount{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: operator.ServiceAccount}, sa)).To(Succeed())
		want := metav1.OwnerReference{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}
		for _, name := range []string{manager.CASecretName, manager.WebhookCertSecretName, manager.ProxyCertSecretName} {
			Eventually(func(g Gomega) {
				secret := &corev1.Secret{}
				g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret)).To(Succeed())
				g.Expect(secret.OwnerReferences).To(ContainElement(want), name)
			}).Should(Succeed())
		}

	})
})
