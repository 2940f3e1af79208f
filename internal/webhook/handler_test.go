package webhook

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

// newNamespace makes a namespace where the operator has written the trust
// objects already.
func newNamespace() string {
	GinkgoHelper()
	ns := bareNamespace()
	trustObjects(ns)
	return ns
}

// bareNamespace makes a namespace without the trust objects, as it is
// before the operator has seen a session select it.
func bareNamespace() string {
	GinkgoHelper()
	return suite.Namespace(controlPlane, "inject", nil)
}

// trustObjects writes what the operator keeps in a target namespace (their
// content does not matter to the injector, only that they exist).
func trustObjects(ns string) {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ProxyCertSecret, Namespace: ns}})).To(Succeed())
	Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleConfigMap, Namespace: ns}})).To(Succeed())
	// The injector reads both from its cache.
	Eventually(func() error {
		if err := cached.Get(ctx, client.ObjectKey{Namespace: ns, Name: ProxyCertSecret}, &corev1.Secret{}); err != nil {
			return err
		}
		return cached.Get(ctx, client.ObjectKey{Namespace: ns, Name: TrustBundleConfigMap}, &corev1.ConfigMap{})
	}).Should(Succeed())
}

// readySession creates a session and marks it Ready, as the controller
// would once its release is resolved.
func readySession(ns string, mutate func(*snoopv1alpha1.SnoopSession)) *snoopv1alpha1.SnoopSession {
	GinkgoHelper()
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "session", Namespace: ns},
		Spec: snoopv1alpha1.SnoopSessionSpec{
			KubernetesRelease: "1.37",
			Targets:           snoopv1alpha1.Targets{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	Expect(k8sClient.Create(ctx, s)).To(Succeed())
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: snoopv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ReleaseResolved"})
	Expect(k8sClient.Status().Update(ctx, s)).To(Succeed())
	// The injector reads sessions from its cache.
	Eventually(func() bool {
		got := &snoopv1alpha1.SnoopSession{}
		return cached.Get(ctx, client.ObjectKeyFromObject(s), got) == nil && meta.IsStatusConditionTrue(got.Status.Conditions, snoopv1alpha1.ConditionReady)
	}).Should(BeTrue())
	return s
}

// createPod creates a pod as the ServiceAccount admission plugin would
// leave it (envtest runs without that plugin) and returns it as stored.
func createPod(ns, name string, labels map[string]string) *corev1.Pod {
	GinkgoHelper()
	pod := appPod()
	pod.Name, pod.Namespace, pod.Labels = name, ns, labels
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

var _ = Describe("The pod webhook", Ordered, func() {
	var stop func()
	BeforeAll(func() { stop = startWebhookServer() })
	AfterAll(func() { stop() })

	It("injects the proxy, the redirect and the trust bundle into a selected pod, through the real API server", func() {
		ns := newNamespace()
		readySession(ns, nil)
		pod := createPod(ns, "selected", map[string]string{"app": "demo"})
		Expect(names(pod.Spec.InitContainers)).To(Equal([]string{targets.ProxyContainerName, IPTablesContainerName, "migrate"}))
		Expect(pod.Annotations).To(HaveKeyWithValue(AnnotationSession, ns+"/session"))
		Expect(pod.Spec.Volumes[0].Projected.Sources[1].ConfigMap.Name).To(Equal(TrustBundleConfigMap))
		Expect(pod.Spec.InitContainers[0].Args).To(ContainElement("--release=1.37"))

		other := createPod(ns, "other", map[string]string{"app": "other"})
		Expect(names(other.Spec.InitContainers)).To(Equal([]string{"migrate"}))
	})

	It("points containers at the proxy in env mode, with the session's body settings", func() {
		ns := newNamespace()
		readySession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Interception = snoopv1alpha1.InterceptionEnv
			s.Spec.Recording = snoopv1alpha1.Recording{RequestBodies: true, MaxBodyBytes: ptr.To[int32](2048)}
		})
		pod := createPod(ns, "selected", map[string]string{"app": "demo"})
		Expect(names(pod.Spec.InitContainers)).To(Equal([]string{targets.ProxyContainerName, "migrate"}))
		Expect(env(pod.Spec.Containers[0], "KUBERNETES_SERVICE_HOST")).To(Equal([]string{"127.0.0.1"}))
		Expect(pod.Spec.InitContainers[0].Args).To(ContainElements("--keep-bodies", "--max-body-bytes=2048"))
	})

	It("leaves pods alone when the session is suspended or not ready", func() {
		ns := newNamespace()
		readySession(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.Suspend = true })
		Expect(names(createPod(ns, "suspended", map[string]string{"app": "demo"}).Spec.InitContainers)).To(Equal([]string{"migrate"}))

		ns2 := newNamespace()
		s := &snoopv1alpha1.SnoopSession{ObjectMeta: metav1.ObjectMeta{Name: "session", Namespace: ns2}, Spec: snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37"}}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Expect(names(createPod(ns2, "not-ready", nil).Spec.InitContainers)).To(Equal([]string{"migrate"}))
	})

	It("leaves pods alone after the session's stop time, with the opt-out label, or on the host network", func() {
		ns := newNamespace()
		readySession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(-time.Minute)}
		})
		Expect(names(createPod(ns, "after-stop", map[string]string{"app": "demo"}).Spec.InitContainers)).To(Equal([]string{"migrate"}))

		ns2 := newNamespace()
		readySession(ns2, nil)
		Expect(names(createPod(ns2, "opted-out", map[string]string{"app": "demo", snoopv1alpha1.IgnoreLabel: ""}).Spec.InitContainers)).To(Equal([]string{"migrate"}))
		host := appPod()
		host.Name, host.Namespace, host.Labels = "host", ns2, map[string]string{"app": "demo"}
		host.Spec.HostNetwork = true
		Expect(k8sClient.Create(ctx, host)).To(Succeed())
		Expect(names(host.Spec.InitContainers)).To(Equal([]string{"migrate"}))
	})

	It("admits pods unrecorded, with a warning, until the operator has written the trust objects", func() {
		ns := bareNamespace()
		readySession(ns, nil)
		pod := createPod(ns, "early", map[string]string{"app": "demo"})
		Expect(names(pod.Spec.InitContainers)).To(Equal([]string{"migrate"}))
		trustObjects(ns)
		Expect(names(createPod(ns, "later", map[string]string{"app": "demo"}).Spec.InitContainers)).To(ContainElement(targets.ProxyContainerName))
	})

	It("selects pods of other namespaces by namespace labels", func() {
		home := newNamespace()
		target := suite.Namespace(controlPlane, "labelled", map[string]string{"snoop": "on"})
		trustObjects(target)
		readySession(home, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets = snoopv1alpha1.Targets{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"snoop": "on"}}}
		})
		pod := createPod(target, "anything", nil)
		Expect(pod.Annotations).To(HaveKeyWithValue(AnnotationSession, home+"/session"))
	})

	It("fails open: with the webhook down, pods are created unrecorded", func() {
		ns := newNamespace()
		readySession(ns, nil)
		stop()
		pod := createPod(ns, "while-down", map[string]string{"app": "demo"})
		Expect(names(pod.Spec.InitContainers)).To(Equal([]string{"migrate"}))
		stop = startWebhookServer()
		Eventually(func() []string {
			p := appPod()
			p.GenerateName, p.Namespace, p.Labels = "after-", ns, map[string]string{"app": "demo"}
			Expect(k8sClient.Create(ctx, p)).To(Succeed())
			return names(p.Spec.InitContainers)
		}).Should(ContainElement(targets.ProxyContainerName))
	})
})
