package controllers

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// newNamespace creates a fresh namespace for one test.
func newNamespace(labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "snoop-test-", Labels: labels}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	DeferCleanup(func() { _ = k8sClient.Delete(ctx, ns) })
	return ns.Name
}

func newSession(namespace string, mutate func(*snoopv1alpha1.SnoopSession)) *snoopv1alpha1.SnoopSession {
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "session", Namespace: namespace},
		Spec:       snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37"},
	}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func newPod(namespace, name string, labels map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:dev"}}},
	}
	for _, m := range mutate {
		m(pod)
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

func getSession(s *snoopv1alpha1.SnoopSession) func(Gomega) *snoopv1alpha1.SnoopSession {
	return func(g Gomega) *snoopv1alpha1.SnoopSession {
		got := &snoopv1alpha1.SnoopSession{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		return got
	}
}

// sessionEvents returns "Type/Reason: note" of the Events about a session, for
// readable matchers.
func sessionEvents(s *snoopv1alpha1.SnoopSession) func(Gomega) []string {
	return func(g Gomega) []string {
		var list eventsv1.EventList
		g.Expect(k8sClient.List(ctx, &list, client.InNamespace(s.Namespace))).To(Succeed())
		var got []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "SnoopSession" && e.Regarding.Name == s.Name {
				got = append(got, fmt.Sprintf("%s/%s: %s", e.Type, e.Reason, e.Note))
			}
		}
		return got
	}
}

// condition returns "Status/Reason" of a condition, for readable matchers.
func condition(s *snoopv1alpha1.SnoopSession, conditionType string) string {
	c := meta.FindStatusCondition(s.Status.Conditions, conditionType)
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%s/%s", c.Status, c.Reason)
}

var _ = Describe("SnoopSession controller", func() {
	It("resolves a supported release and reports the empty coverage summary", func() {
		ns := newNamespace(nil)
		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())

		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(got.Finalizers).To(ContainElement(Finalizer))
			g.Expect(condition(got, snoopv1alpha1.ConditionReady)).To(Equal("True/ReleaseResolved"))
			g.Expect(condition(got, snoopv1alpha1.ConditionDegraded)).To(Equal("False/AsExpected"))
			g.Expect(condition(got, snoopv1alpha1.ConditionRecording)).To(Equal("False/NoTargetPods"))
			g.Expect(got.Status.Release).To(Equal("1.37"))
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			// The catalog of 1.37 sets the totals; nothing is hit yet.
			g.Expect(got.Status.Coverage.Stable).To(Equal(snoopv1alpha1.LevelCoverage{Operations: 707, Hit: 0, Percent: "0.0"}))
			g.Expect(got.Status.Coverage.Eligible).To(Equal(snoopv1alpha1.LevelCoverage{Operations: 602, Hit: 0, Percent: "0.0"}))
		}).Should(Succeed())

		By("showing zero counts, not leaving them out")
		raw := &unstructured.Unstructured{}
		raw.SetGroupVersionKind(snoopv1alpha1.GroupVersion.WithKind("SnoopSession"))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), raw)).To(Succeed())
		requests, found, err := unstructured.NestedInt64(raw.Object, "status", "requests")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(requests).To(BeZero())
	})

	It("flags an unsupported release with UnsupportedRelease", func() {
		ns := newNamespace(nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = "1.99" })
		Expect(k8sClient.Create(ctx, s)).To(Succeed())

		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			ready := meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(snoopv1alpha1.ReasonUnsupportedRelease))
			g.Expect(ready.Message).To(And(ContainSubstring("spec.kubernetesRelease"), ContainSubstring("1.37")))
			g.Expect(condition(got, snoopv1alpha1.ConditionDegraded)).To(Equal("True/UnsupportedRelease"))
			// A spec problem is still a successful reconcile of this
			// generation, though it ends with a terminal error.
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		}).Should(Succeed())
		Eventually(sessionEvents(s)).Should(ConsistOf(And(
			HavePrefix("Warning/UnsupportedRelease: "), ContainSubstring(`spec.kubernetesRelease "1.99"`))))

		By("becoming ready once the release is fixed")
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			got.Spec.KubernetesRelease = "1.36"
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(condition(got, snoopv1alpha1.ConditionReady)).To(Equal("True/ReleaseResolved"))
			g.Expect(condition(got, snoopv1alpha1.ConditionDegraded)).To(Equal("False/AsExpected"))
			g.Expect(got.Status.Release).To(Equal("1.36"))
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		}).Should(Succeed())
	})

	It("resolves the live cluster's release", func() {
		ns := newNamespace(nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = snoopv1alpha1.ClusterRelease })
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) string {
			return getSession(s)(g).Status.Release
		}).Should(Equal("cluster v" + testenv.KubeVersion))
		Eventually(func(g Gomega) int32 {
			return getSession(s)(g).Status.Coverage.Stable.Operations
		}).Should(BeNumerically(">", 600))
	})

	It("follows target pods as they are created and deleted", func() {
		ns := newNamespace(nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		matched := func(g Gomega) snoopv1alpha1.PodCounts { return getSession(s)(g).Status.Pods }

		// Reconciled once (observedGeneration set) with nothing matched yet.
		Eventually(func(g Gomega) snoopv1alpha1.PodCounts {
			got := getSession(s)(g)
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			return got.Status.Pods
		}).Should(Equal(snoopv1alpha1.PodCounts{}))
		a := newPod(ns, "a", map[string]string{"app": "demo"})
		newPod(ns, "b", map[string]string{"app": "demo"})
		newPod(ns, "other", map[string]string{"app": "other"})
		Eventually(matched).Should(Equal(snoopv1alpha1.PodCounts{Matched: 2, WaitingForRestart: 2}))
		Eventually(func(g Gomega) string {
			return condition(getSession(s)(g), snoopv1alpha1.ConditionRecording)
		}).Should(Equal("False/PodsSelected"))

		newPod(ns, "injected", map[string]string{"app": "demo"}, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: targets.ProxyContainerName, Image: "apisnoop:dev"}}
		})
		Eventually(matched).Should(Equal(snoopv1alpha1.PodCounts{Matched: 3, Injected: 1, WaitingForRestart: 2}))
		Eventually(func(g Gomega) string {
			return condition(getSession(s)(g), snoopv1alpha1.ConditionRecording)
		}).Should(Equal("True/PodsSelected"))
		Eventually(sessionEvents(s)).Should(ConsistOf("Normal/PodsInjected: 1 of 3 target pods record through the proxy (1 more)"))

		Expect(k8sClient.Delete(ctx, a, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(matched).Should(Equal(snoopv1alpha1.PodCounts{Matched: 2, Injected: 1, WaitingForRestart: 1}))
	})

	It("selects pods in listed namespaces and in namespaces selected by label", func() {
		home := newNamespace(nil)
		teamA := newNamespace(map[string]string{"team": "a"})
		teamB := newNamespace(map[string]string{"team": "b"})
		newPod(teamA, "p", nil)
		newPod(teamB, "p", nil)
		newPod(teamB, "q", nil)

		listed := newSession(home, func(s *snoopv1alpha1.SnoopSession) {
			s.Name = "listed"
			s.Spec.Targets.Namespaces = []string{teamA, teamB}
		})
		selected := newSession(home, func(s *snoopv1alpha1.SnoopSession) {
			s.Name = "selected"
			s.Spec.Targets.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}
		})
		Expect(k8sClient.Create(ctx, listed)).To(Succeed())
		Expect(k8sClient.Create(ctx, selected)).To(Succeed())
		Eventually(func(g Gomega) int32 { return getSession(listed)(g).Status.Pods.Matched }).Should(BeEquivalentTo(3))
		Eventually(func(g Gomega) int32 { return getSession(selected)(g).Status.Pods.Matched }).Should(BeEquivalentTo(2))

		By("following a namespace's label change")
		Eventually(func(g Gomega) {
			nsA := &corev1.Namespace{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: teamA}, nsA)).To(Succeed())
			nsA.Labels["team"] = "b"
			g.Expect(k8sClient.Update(ctx, nsA)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) int32 { return getSession(selected)(g).Status.Pods.Matched }).Should(BeEquivalentTo(3))
	})

	It("flags a selector the API server cannot check with InvalidSelector", func() {
		ns := newNamespace(nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "not a label value"}}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			ready := meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Reason).To(Equal(snoopv1alpha1.ReasonInvalidSelector))
			g.Expect(ready.Message).To(ContainSubstring("spec.targets.podSelector"))
		}).Should(Succeed())
	})

	It("stops recording when suspended or past its stop time", func() {
		ns := newNamespace(nil)
		suspended := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Name = "suspended"
			s.Spec.Suspend = true
		})
		stopped := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Name = "stopped"
			s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(-time.Minute)}
		})
		Expect(k8sClient.Create(ctx, suspended)).To(Succeed())
		Expect(k8sClient.Create(ctx, stopped)).To(Succeed())
		Eventually(func(g Gomega) string {
			return condition(getSession(suspended)(g), snoopv1alpha1.ConditionRecording)
		}).Should(Equal("False/Suspended"))
		Eventually(func(g Gomega) string {
			return condition(getSession(stopped)(g), snoopv1alpha1.ConditionRecording)
		}).Should(Equal("False/Stopped"))
		Eventually(sessionEvents(stopped)).Should(ConsistOf(HavePrefix("Normal/Stopped: The session stopped at ")))
		Consistently(sessionEvents(suspended), time.Second).Should(BeEmpty())
	})

	It("removes its finalizer when the session is deleted", func() {
		ns := newNamespace(nil)
		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) []string { return getSession(s)(g).Finalizers }).Should(ContainElement(Finalizer))

		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		Eventually(func() bool {
			err := k8sClient.Get(ctx, client.ObjectKeyFromObject(s), &snoopv1alpha1.SnoopSession{})
			return apierrors.IsNotFound(err)
		}).Should(BeTrue())
	})
})

var _ = Describe("SnoopSession validation by the API server", func() {
	DescribeTable("rejects an invalid session with a message naming the field",
		func(mutate func(*snoopv1alpha1.SnoopSession), wantField, wantMessage string) {
			ns := newNamespace(nil)
			err := k8sClient.Create(ctx, newSession(ns, mutate))
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(And(ContainSubstring(wantField), ContainSubstring(wantMessage)))
		},
		Entry("a missing release", func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = "" },
			"spec.kubernetesRelease", `must be a minor release like "1.37" or "cluster"`),
		Entry("a malformed release", func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = "v1.37.2" },
			"spec.kubernetesRelease", `must be a minor release like "1.37" or "cluster"`),
		Entry("a release older than supported", func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = "1.20" },
			"spec.kubernetesRelease", "must be 1.31 or later"),
		Entry("an unknown interception mode", func(s *snoopv1alpha1.SnoopSession) { s.Spec.Interception = "sidecar" },
			"spec.interception", `supported values: "iptables", "env"`),
		Entry("both duration and stopAt", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Duration = &metav1.Duration{Duration: time.Hour}
			s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(time.Hour)}
		}, "spec", "set either spec.duration or spec.stopAt, not both"),
		Entry("both namespaces and namespaceSelector", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.Namespaces = []string{"a"}
			s.Spec.Targets.NamespaceSelector = &metav1.LabelSelector{}
		}, "spec.targets", "set either spec.targets.namespaceSelector or spec.targets.namespaces, not both"),
		Entry("a malformed namespace name", func(s *snoopv1alpha1.SnoopSession) { s.Spec.Targets.Namespaces = []string{"Not_A_Namespace"} },
			"spec.targets.namespaces[0]", "should match"),
		Entry("a selector with an unknown operator", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: "Equals", Values: []string{"x"}},
			}}
		}, "spec.targets", "spec.targets.podSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist"),
		Entry("a body cap without bodies", func(s *snoopv1alpha1.SnoopSession) { s.Spec.Recording.MaxBodyBytes = ptr.To[int32](4096) },
			"spec.recording", "spec.recording.maxBodyBytes needs spec.recording.requestBodies: true"),
		Entry("a body cap out of range", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Recording.RequestBodies = true
			s.Spec.Recording.MaxBodyBytes = ptr.To[int32](64 << 20)
		}, "spec.recording.maxBodyBytes", "should be less than or equal to 1048576"),
	)

	It("defaults the interception mode to iptables", func() {
		ns := newNamespace(nil)
		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Expect(s.Spec.Interception).To(Equal(snoopv1alpha1.InterceptionIPTables))
	})
})

var _ = Describe("The Recording condition", func() {
	// The webhook injects by targets.Injecting; the condition must tell the
	// user the same.
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	DescribeTable("agrees with the webhook's injection rule",
		func(mutate func(*snoopv1alpha1.SnoopSession), wantReason string, wantInjecting bool) {
			session := newSession("ns", mutate)
			session.CreationTimestamp = metav1.Time{Time: now.Add(-time.Hour)}
			setReady(session, snoopv1alpha1.ReasonReleaseResolved, "resolved")
			r := &SnoopSessionReconciler{Now: func() time.Time { return now }}
			_, err := r.updateRecording(ctx, &sessionScope{session: session})
			Expect(err).NotTo(HaveOccurred())
			Expect(condition(session, snoopv1alpha1.ConditionRecording)).To(HaveSuffix("/" + wantReason))
			Expect(targets.Injecting(session, now)).To(Equal(wantInjecting))
		},
		Entry("no targets", nil, snoopv1alpha1.ReasonNoTargets, true),
		Entry("targets waiting for a restart", func(s *snoopv1alpha1.SnoopSession) {
			s.Status.Pods = snoopv1alpha1.PodCounts{Matched: 2, WaitingForRestart: 2}
		}, snoopv1alpha1.ReasonPodsSelected, true),
		Entry("before the stop time", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Duration = &metav1.Duration{Duration: 2 * time.Hour}
			s.Status.Pods = snoopv1alpha1.PodCounts{Matched: 1, Injected: 1}
		}, snoopv1alpha1.ReasonPodsSelected, true),
		Entry("suspended", func(s *snoopv1alpha1.SnoopSession) { s.Spec.Suspend = true },
			snoopv1alpha1.ReasonSuspended, false),
		Entry("past its duration", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Duration = &metav1.Duration{Duration: time.Minute}
		}, snoopv1alpha1.ReasonStopped, false),
		Entry("suspended and past stopAt", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Suspend = true
			s.Spec.StopAt = &metav1.Time{Time: now}
		}, snoopv1alpha1.ReasonStopped, false),
	)
})
