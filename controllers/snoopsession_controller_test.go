package controllers

import (
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

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
	It("resolves a supported release and shows zero pods", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		release, err := catalog.Load("1.37")
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(got.Finalizers).To(ContainElement(Finalizer))
			g.Expect(condition(got, snoopv1alpha1.ConditionReady)).To(Equal("True/ReleaseResolved"))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionReady).Message).
				To(Equal(fmt.Sprintf("Requests are matched against Kubernetes 1.37 (%d operations)", len(release.Operations))))
			g.Expect(condition(got, snoopv1alpha1.ConditionDegraded)).To(Equal("False/AsExpected"))
			g.Expect(condition(got, snoopv1alpha1.ConditionRecording)).To(Equal("False/NoTargetPods"))
			g.Expect(condition(got, snoopv1alpha1.ConditionCompleted)).To(Equal("False/Running"))
			g.Expect(got.Status.Release).To(Equal("1.37"))
			g.Expect(got.Status.CompletionTime).To(BeNil())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		}).Should(Succeed())

		By("showing zero pod counts, not leaving them out, and no results: those are the collector's")
		status := rawStatus(s)
		Expect(status).To(HaveKeyWithValue("pods", map[string]any{"matched": int64(0), "injected": int64(0), "waitingForRestart": int64(0)}))
		Expect(status).NotTo(HaveKey("coverage"))
		Expect(status).NotTo(HaveKey("requests"))
	})

	It("flags an unsupported release with UnsupportedRelease", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
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
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = snoopv1alpha1.ClusterRelease })
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(got.Status.Release).To(Equal("cluster v" + testenv.KubeVersion))
			ready := meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Message).To(MatchRegexp(`^Requests are matched against Kubernetes cluster v\S+ \(\d{3,} operations\)$`))
		}).Should(Succeed())
	})

	It("follows target pods as they are created and deleted", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
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
		Eventually(func(g Gomega) *metav1.Condition {
			return meta.FindStatusCondition(getSession(s)(g).Status.Conditions, snoopv1alpha1.ConditionRecording)
		}).Should(PointTo(MatchFields(IgnoreExtras, Fields{
			"Status":  Equal(metav1.ConditionFalse),
			"Reason":  Equal(snoopv1alpha1.ReasonPodsWaitingForRestart),
			"Message": Equal("None of 2 target pods is recorded yet: 2 pods created before the session wait for a restart to be recorded"),
		})))

		newPod(ns, "injected", map[string]string{"app": "demo"}, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: targets.ProxyContainerName, Image: "apisnoop:dev"}}
		})
		Eventually(matched).Should(Equal(snoopv1alpha1.PodCounts{Matched: 3, Injected: 1, WaitingForRestart: 2}))
		Eventually(func(g Gomega) *metav1.Condition {
			return meta.FindStatusCondition(getSession(s)(g).Status.Conditions, snoopv1alpha1.ConditionRecording)
		}).Should(PointTo(MatchFields(IgnoreExtras, Fields{
			"Status":  Equal(metav1.ConditionTrue),
			"Reason":  Equal(snoopv1alpha1.ReasonPodsWaitingForRestart),
			"Message": Equal("Recording 1 of 3 target pods; 2 pods created before the session wait for a restart to be recorded"),
		})))
		Expect(condition(getSession(s)(Default), snoopv1alpha1.ConditionDegraded)).To(Equal("False/AsExpected"))
		Eventually(sessionEvents(s)).Should(ConsistOf("Normal/PodsInjected: 1 of 3 target pods record through the proxy (1 more)"))

		Expect(k8sClient.Delete(ctx, a, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(matched).Should(Equal(snoopv1alpha1.PodCounts{Matched: 2, Injected: 1, WaitingForRestart: 1}))
		Eventually(func(g Gomega) string {
			return meta.FindStatusCondition(getSession(s)(g).Status.Conditions, snoopv1alpha1.ConditionRecording).Message
		}).Should(Equal("Recording 1 of 2 target pods; 1 pod created before the session waits for a restart to be recorded"))
	})

	It("selects pods in listed namespaces and in namespaces selected by label", func() {
		home := suite.Namespace(controlPlane, "snoop-test", nil)
		teamA := suite.Namespace(controlPlane, "snoop-test", map[string]string{"team": "a"})
		teamB := suite.Namespace(controlPlane, "snoop-test", map[string]string{"team": "b"})
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
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
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

	It("stops recording while suspended, without completing", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.Suspend = true })
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(condition(got, snoopv1alpha1.ConditionRecording)).To(Equal("False/Suspended"))
			g.Expect(condition(got, snoopv1alpha1.ConditionCompleted)).To(Equal("False/Suspended"))
			g.Expect(got.Status.CompletionTime).To(BeNil())
		}).Should(Succeed())
		Consistently(sessionEvents(s), time.Second).Should(BeEmpty())
	})

	It("completes a session past its stop time, once", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(-time.Minute)}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		stopAt := s.Spec.StopAt.UTC() // as stored: whole seconds

		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			completed := meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionCompleted)
			g.Expect(completed).NotTo(BeNil())
			g.Expect(completed.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(completed.Reason).To(Equal(snoopv1alpha1.ReasonCompleted))
			g.Expect(completed.Message).To(Equal("The session stopped at " + stopAt.Format(time.RFC3339) + "; its results are final"))
			g.Expect(condition(got, snoopv1alpha1.ConditionRecording)).To(Equal("False/Stopped"))
			g.Expect(got.Status.CompletionTime).NotTo(BeNil())
			g.Expect(got.Status.CompletionTime.Time).To(BeTemporally("==", stopAt))
		}).Should(Succeed())
		Eventually(sessionEvents(s)).Should(ConsistOf(
			"Normal/SessionCompleted: The session stopped at " + stopAt.Format(time.RFC3339) + "; its results are final and pods created from now on are not injected"))

		By("announcing it once, though pods come and go")
		newPod(ns, "late", nil)
		Eventually(func(g Gomega) int32 { return getSession(s)(g).Status.Pods.Matched }).Should(BeEquivalentTo(1))
		Consistently(sessionEvents(s), time.Second).Should(HaveLen(1))
	})

	It("completes a session when its stop time comes", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(3 * time.Second)}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) string {
			return condition(getSession(s)(g), snoopv1alpha1.ConditionCompleted)
		}).Should(Equal("False/Running"))
		Expect(meta.FindStatusCondition(getSession(s)(Default).Status.Conditions, snoopv1alpha1.ConditionCompleted).Message).
			To(Equal("The session runs until " + s.Spec.StopAt.UTC().Format(time.RFC3339)))
		// No event wakes the controller: its requeue at the stop time does.
		Eventually(func(g Gomega) string {
			return condition(getSession(s)(g), snoopv1alpha1.ConditionCompleted)
		}).Should(Equal("True/Completed"))
		Eventually(sessionEvents(s)).Should(ConsistOf(HavePrefix("Normal/SessionCompleted: ")))
	})

	It("deletes its results ConfigMaps and removes its finalizer when the session is deleted", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) []string { return getSession(s)(g).Finalizers }).Should(ContainElement(Finalizer))

		managed := map[string]string{snoopv1alpha1.ManagedByLabel: snoopv1alpha1.ManagedByValue}
		for name, labels := range map[string]map[string]string{
			"session-results":   results.Labels(s.Name),
			"session-results-1": results.Labels(s.Name),
			"other-results":     results.Labels("other"),
			"not-ours":          {results.SessionLabel: s.Name}, // the operator did not write it
			"trust":             managed,
		} {
			Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}})).To(Succeed())
		}

		Expect(k8sClient.Delete(ctx, s)).To(Succeed())
		Eventually(func() bool {
			err := k8sClient.Get(ctx, client.ObjectKeyFromObject(s), &snoopv1alpha1.SnoopSession{})
			return apierrors.IsNotFound(err)
		}).Should(BeTrue())
		var left corev1.ConfigMapList
		Expect(k8sClient.List(ctx, &left, client.InNamespace(ns))).To(Succeed())
		var names []string
		for _, cm := range left.Items {
			if cm.DeletionTimestamp == nil {
				names = append(names, cm.Name)
			}
		}
		Expect(names).To(ConsistOf("other-results", "not-ours", "trust"))
	})
})

var _ = Describe("The SnoopSession status", func() {
	It("is written by the controller for its own fields only, beside the collector's", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) int64 { return getSession(s)(g).Status.ObservedGeneration }).Should(BeEquivalentTo(1))

		wantController := ConsistOf("f:observedGeneration", "f:conditions", "f:release", "f:pods")
		Expect(statusFieldsOf(s, snoopv1alpha1.FieldOwnerController)).To(wantController)

		By("taking the collector's fields, applied without force: nothing of the controller's conflicts")
		Expect(k8sClient.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(collectorStatus(s, map[string]any{
			"requests":        int64(42),
			"unknownRequests": int64(3),
			"failedRequests":  int64(1),
			"coverage": map[string]any{
				"stable": map[string]any{"operations": int64(707), "hit": int64(12), "percent": "1.7"},
			},
			"resultsConfigMaps": []any{"session-results"},
			"resultsPage":       collector.ResultsPagePath(ns, s.Name),
		})), client.FieldOwner(snoopv1alpha1.FieldOwnerCollector))).To(Succeed())
		got := getSession(s)(Default)
		Expect(condition(got, snoopv1alpha1.ConditionReady)).To(Equal("True/ReleaseResolved"))
		Expect(got.Status.Pods).To(Equal(snoopv1alpha1.PodCounts{}))

		By("keeping them through the controller's next writes")
		newPod(ns, "a", map[string]string{"app": "demo"})
		newPod(ns, "b", map[string]string{"app": "demo"}, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: targets.ProxyContainerName, Image: "apisnoop:dev"}}
		})
		Eventually(func(g Gomega) snoopv1alpha1.PodCounts { return getSession(s)(g).Status.Pods }).
			Should(Equal(snoopv1alpha1.PodCounts{Matched: 2, Injected: 1, WaitingForRestart: 1}))
		Consistently(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(got.Status.Requests).To(BeEquivalentTo(42))
			g.Expect(got.Status.UnknownRequests).To(BeEquivalentTo(3))
			g.Expect(got.Status.FailedRequests).To(BeEquivalentTo(1))
			g.Expect(got.Status.Coverage.Stable).To(Equal(snoopv1alpha1.LevelCoverage{Operations: 707, Hit: 12, Percent: "1.7"}))
			g.Expect(got.Status.ResultsConfigMaps).To(Equal([]string{"session-results"}))
			g.Expect(got.Status.ResultsPage).To(Equal("/sessions/" + ns + "/" + s.Name + "/page"))
		}, time.Second).Should(Succeed())
		Expect(statusFieldsOf(s, snoopv1alpha1.FieldOwnerController)).To(wantController)
		Expect(statusFieldsOf(s, snoopv1alpha1.FieldOwnerCollector)).To(
			ConsistOf("f:requests", "f:unknownRequests", "f:failedRequests", "f:coverage", "f:resultsConfigMaps", "f:resultsPage"))

		By("owning completionTime once the session completes")
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			got.Spec.StopAt = &metav1.Time{Time: time.Now().Add(-time.Second)}
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) []string { return statusFieldsOf(s, snoopv1alpha1.FieldOwnerController) }).
			Should(ConsistOf("f:observedGeneration", "f:conditions", "f:release", "f:pods", "f:completionTime"))
		Expect(getSession(s)(Default).Status.Requests).To(BeEquivalentTo(42))
	})
})

var _ = Describe("SnoopSession validation by the API server", func() {
	DescribeTable("rejects an invalid session with a message naming the field",
		func(mutate func(*snoopv1alpha1.SnoopSession), wantField, wantMessage string) {
			ns := suite.Namespace(controlPlane, "snoop-test", nil)
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
		Entry("an audit filter on a session of pods", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Audit = &snoopv1alpha1.AuditFilter{Users: []string{"alice"}}
		}, "spec", "spec.audit filters the API server's audit stream: it needs spec.source: audit"),
		Entry("targets on an audit session", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Source = snoopv1alpha1.SourceAudit
			s.Spec.Targets.Namespaces = []string{"a"}
		}, "spec", "a session with spec.source: audit records no pods: remove spec.targets, and filter requests with spec.audit"),
		Entry("bodies on an audit session", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Source = snoopv1alpha1.SourceAudit
			s.Spec.Recording.RequestBodies = true
		}, "spec", "spec.recording.requestBodies applies to recorded pods"),
		Entry("restartWorkloads on an audit session", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Source = snoopv1alpha1.SourceAudit
			s.Spec.RestartWorkloads = true
		}, "spec", "spec.restartWorkloads applies to recorded pods, not to spec.source: audit"),
		Entry("an unknown source", func(s *snoopv1alpha1.SnoopSession) { s.Spec.Source = "proxy" },
			"spec.source", `supported values: "pods", "audit"`),
		Entry("a malformed service account", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Source = snoopv1alpha1.SourceAudit
			s.Spec.Audit = &snoopv1alpha1.AuditFilter{ServiceAccounts: []string{"just-a-name"}}
		}, "spec.audit.serviceAccounts[0]", "should match"),
		Entry("a body cap out of range", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Recording.RequestBodies = true
			s.Spec.Recording.MaxBodyBytes = ptr.To[int32](64 << 20)
		}, "spec.recording.maxBodyBytes", "should be less than or equal to 1048576"),
	)

	It("takes an audit session with a filter, and says it records the audit stream", func() {
		s := newSession(operatorNamespace, func(s *snoopv1alpha1.SnoopSession) {
			s.Name = "audit-filtered"
			s.Spec.Targets = snoopv1alpha1.Targets{}
			s.Spec.Source = snoopv1alpha1.SourceAudit
			s.Spec.Audit = &snoopv1alpha1.AuditFilter{UserAgents: []string{"e2e.test/"}, ServiceAccounts: []string{"ci/runner"}}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			c := meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionRecording)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(snoopv1alpha1.ReasonAuditStream))
			g.Expect(c.Message).To(Equal("Taking the requests by ci/runner from user agents e2e.test/* from the API server's audit webhook"))
			g.Expect(got.Status.Pods).To(BeZero())
		}).Should(Succeed())
	})

	It("stops an audit session outside the namespaces that may take the audit stream, saying where they may", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets = snoopv1alpha1.Targets{}
			s.Spec.Source = snoopv1alpha1.SourceAudit
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			for _, condition := range []string{snoopv1alpha1.ConditionReady, snoopv1alpha1.ConditionRecording} {
				c := meta.FindStatusCondition(got.Status.Conditions, condition)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse), condition)
				g.Expect(c.Reason).To(Equal(snoopv1alpha1.ReasonAuditSourceNotAllowed), condition)
			}
			ready := meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionReady)
			g.Expect(ready.Message).To(Equal("spec.source: audit counts requests from the whole cluster, so this operator takes audit sessions only in namespace " +
				operatorNamespace + " (the manager's --audit-session-namespaces, Helm value collector.auditSessionNamespaces): create the session there, or record pods with spec.source: pods"))
			g.Expect(targets.Active(got, time.Now())).To(BeFalse())
		}).Should(Succeed())
	})

	It("defaults the interception mode to iptables", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		Expect(s.Spec.Interception).To(Equal(snoopv1alpha1.InterceptionIPTables))
	})
})

var _ = Describe("The Recording and Completed conditions", func() {
	// The webhook injects by targets.Injecting; the conditions must tell the
	// user the same.
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	DescribeTable("agree with the webhook's injection rule",
		func(mutate func(*snoopv1alpha1.SnoopSession), wantRecording, wantCompleted string, wantInjecting bool) {
			session := newSession("ns", mutate)
			session.CreationTimestamp = metav1.Time{Time: now.Add(-time.Hour)}
			setReady(session, snoopv1alpha1.ReasonReleaseResolved, "resolved")
			r := &SnoopSessionReconciler{Now: func() time.Time { return now }}
			scope := &sessionScope{session: session}
			_, err := r.updateCompletion(ctx, scope)
			Expect(err).NotTo(HaveOccurred())
			_, err = r.updateRecording(ctx, scope)
			Expect(err).NotTo(HaveOccurred())
			Expect(condition(session, snoopv1alpha1.ConditionRecording)).To(Equal(wantRecording))
			Expect(condition(session, snoopv1alpha1.ConditionCompleted)).To(Equal(wantCompleted))
			Expect(session.Status.CompletionTime != nil).To(Equal(wantCompleted == "True/Completed"))
			Expect(targets.Injecting(session, now)).To(Equal(wantInjecting))
		},
		Entry("no targets", nil, "False/NoTargetPods", "False/Running", true),
		Entry("targets waiting for a restart", func(s *snoopv1alpha1.SnoopSession) {
			s.Status.Pods = snoopv1alpha1.PodCounts{Matched: 2, WaitingForRestart: 2}
		}, "False/PodsWaitingForRestart", "False/Running", true),
		Entry("some targets waiting for a restart", func(s *snoopv1alpha1.SnoopSession) {
			s.Status.Pods = snoopv1alpha1.PodCounts{Matched: 2, Injected: 1, WaitingForRestart: 1}
		}, "True/PodsWaitingForRestart", "False/Running", true),
		Entry("before the stop time", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Duration = &metav1.Duration{Duration: 2 * time.Hour}
			s.Status.Pods = snoopv1alpha1.PodCounts{Matched: 1, Injected: 1}
		}, "True/PodsSelected", "False/Running", true),
		Entry("suspended", func(s *snoopv1alpha1.SnoopSession) { s.Spec.Suspend = true },
			"False/Suspended", "False/Suspended", false),
		Entry("past its duration", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Duration = &metav1.Duration{Duration: time.Minute}
		}, "False/Stopped", "True/Completed", false),
		Entry("suspended and past stopAt", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Suspend = true
			s.Spec.StopAt = &metav1.Time{Time: now}
		}, "False/Stopped", "True/Completed", false),
		Entry("given a later stopAt after it completed", func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.StopAt = &metav1.Time{Time: now.Add(time.Hour)}
			s.Status.CompletionTime = &metav1.Time{Time: now.Add(-time.Hour)}
			s.Status.Pods = snoopv1alpha1.PodCounts{Matched: 1, Injected: 1}
		}, "True/PodsSelected", "False/Running", true),
	)

	It("sets completionTime to the stop time, once", func() {
		session := newSession("ns", func(s *snoopv1alpha1.SnoopSession) { s.Spec.StopAt = &metav1.Time{Time: now.Add(-time.Hour)} })
		r := &SnoopSessionReconciler{Now: func() time.Time { return now }}
		_, err := r.updateCompletion(ctx, &sessionScope{session: session})
		Expect(err).NotTo(HaveOccurred())
		Expect(session.Status.CompletionTime.Time).To(Equal(now.Add(-time.Hour)))

		session.Spec.StopAt = &metav1.Time{Time: now.Add(-time.Minute)}
		_, err = r.updateCompletion(ctx, &sessionScope{session: session})
		Expect(err).NotTo(HaveOccurred())
		Expect(session.Status.CompletionTime.Time).To(Equal(now.Add(-time.Hour)))
	})

	It("requeues at the stop time", func() {
		session := newSession("ns", func(s *snoopv1alpha1.SnoopSession) { s.Spec.StopAt = &metav1.Time{Time: now.Add(90 * time.Second)} })
		r := &SnoopSessionReconciler{Now: func() time.Time { return now }}
		res, err := r.updateCompletion(ctx, &sessionScope{session: session})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(Equal(90 * time.Second))
	})
})

var _ = Describe("The CertificatePending check", func() {
	It("degrades a session that injects until the proxy's certificate exists", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		pair := types.NamespacedName{Namespace: ns, Name: "apisnoop-proxy-tls"}
		r := &SnoopSessionReconciler{Client: k8sClient, ProxyCertSecret: pair}
		check := func(mutate func(*snoopv1alpha1.SnoopSession)) *snoopv1alpha1.SnoopSession {
			session := newSession(ns, mutate)
			setReady(session, snoopv1alpha1.ReasonReleaseResolved, "resolved")
			scope := &sessionScope{session: session}
			_, err := r.checkProxyCertificate(ctx, scope)
			Expect(err).NotTo(HaveOccurred())
			setDegraded(session, scope.degraded)
			return session
		}

		session := check(nil)
		Expect(condition(session, snoopv1alpha1.ConditionDegraded)).To(Equal("True/CertificatePending"))
		Expect(meta.FindStatusCondition(session.Status.Conditions, snoopv1alpha1.ConditionDegraded).Message).To(Equal(
			"The recording proxy's certificate (Secret " + pair.String() + ") is not issued yet; target pods created until it is are not recorded"))
		By("not for a session that injects nothing")
		Expect(condition(check(func(s *snoopv1alpha1.SnoopSession) { s.Spec.Suspend = true }), snoopv1alpha1.ConditionDegraded)).
			To(Equal("False/AsExpected"))

		By("nor once the pair is issued")
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: pair.Namespace, Name: pair.Name}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		Expect(condition(check(nil), snoopv1alpha1.ConditionDegraded)).To(Equal("True/CertificatePending"), "a Secret without tls.crt is not issued")
		secret.Type = corev1.SecretTypeOpaque
		secret.Data = map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Expect(condition(check(nil), snoopv1alpha1.ConditionDegraded)).To(Equal("False/AsExpected"))

		By("and not at all without a Secret to check")
		r.ProxyCertSecret = types.NamespacedName{}
		Expect(k8sClient.Delete(ctx, secret)).To(Succeed())
		Expect(condition(check(nil), snoopv1alpha1.ConditionDegraded)).To(Equal("False/AsExpected"))
	})
})

// rawStatus returns a session's status as stored, to see which fields are
// there at all.
func rawStatus(s *snoopv1alpha1.SnoopSession) map[string]any {
	raw := &unstructured.Unstructured{}
	raw.SetGroupVersionKind(snoopv1alpha1.GroupVersion.WithKind("SnoopSession"))
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), raw)).To(Succeed())
	status, _, err := unstructured.NestedMap(raw.Object, "status")
	Expect(err).NotTo(HaveOccurred())
	return status
}

// statusFieldsOf returns the top-level status fields a manager owns through
// server-side apply of the status subresource, like "f:requests".
func statusFieldsOf(s *snoopv1alpha1.SnoopSession, manager string) []string {
	got := &snoopv1alpha1.SnoopSession{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
	var fields []string
	for _, entry := range got.ManagedFields {
		if entry.Manager != manager || entry.Subresource != "status" {
			continue
		}
		Expect(entry.Operation).To(Equal(metav1.ManagedFieldsOperationApply), "%s writes the status with server-side apply", manager)
		var set map[string]map[string]any
		Expect(json.Unmarshal(entry.FieldsV1.Raw, &set)).To(Succeed())
		for f := range set["f:status"] {
			fields = append(fields, f)
		}
	}
	return fields
}

// collectorStatus is what the collector applies: only its own fields.
func collectorStatus(s *snoopv1alpha1.SnoopSession, status map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": snoopv1alpha1.GroupVersion.String(),
		"kind":       "SnoopSession",
		"metadata":   map[string]any{"name": s.Name, "namespace": s.Namespace},
		"status":     status,
	}}
}
