package controllers

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

// demoLabels are the labels of the pods the restart tests' sessions select.
var demoLabels = map[string]string{"app": "demo"}

func demoTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:dev"}}},
	}
}

// controlledBy makes a pod (or ReplicaSet) controlled by owner, as the
// workload controllers do; envtest runs none, so the tests build the chain.
func controlledBy(owner client.Object, kind string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.OwnerReferences = []metav1.OwnerReference{controllerRef(owner, kind)} }
}

func controllerRef(owner client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: appsv1.SchemeGroupVersion.String(), Kind: kind,
		Name: owner.GetName(), UID: owner.GetUID(), Controller: ptr.To(true),
	}
}

func newDeployment(namespace, name string, labels map[string]string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: demoTemplate(labels),
		},
	}
	Expect(k8sClient.Create(ctx, d)).To(Succeed())
	return d
}

// newReplicaSet creates a ReplicaSet, controlled by d when it is not nil.
func newReplicaSet(namespace, name string, labels map[string]string, d *appsv1.Deployment) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: demoTemplate(labels),
		},
	}
	if d != nil {
		rs.OwnerReferences = []metav1.OwnerReference{controllerRef(d, "Deployment")}
	}
	Expect(k8sClient.Create(ctx, rs)).To(Succeed())
	return rs
}

func newStatefulSet(namespace, name string, labels map[string]string) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: demoTemplate(labels),
		},
	}
	Expect(k8sClient.Create(ctx, sts)).To(Succeed())
	return sts
}

func newDaemonSet(namespace, name string, labels map[string]string) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: demoTemplate(labels),
		},
	}
	Expect(k8sClient.Create(ctx, ds)).To(Succeed())
	return ds
}

// templateOf reads a workload and returns its pod template's annotations
// and its generation.
func templateOf(obj client.Object) func(Gomega) (map[string]string, int64) {
	return func(g Gomega) (map[string]string, int64) {
		got, template := newWorkloadObject(obj.GetObjectKind().GroupVersionKind().Kind)
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), got)).To(Succeed())
		return template().Annotations, got.GetGeneration()
	}
}

func annotationsOf(obj client.Object) func(Gomega) map[string]string {
	return func(g Gomega) map[string]string {
		annotations, _ := templateOf(obj)(g)
		return annotations
	}
}

// restartEvents returns the WorkloadsRestarted Events about a session, as
// sessionEvents does.
func restartEvents(s *snoopv1alpha1.SnoopSession) func(Gomega) []string {
	return func(g Gomega) []string {
		var got []string
		for _, e := range sessionEvents(s)(g) {
			if strings.HasPrefix(e, "Normal/"+eventWorkloadsRestarted+": ") {
				got = append(got, e)
			}
		}
		return got
	}
}

// withKind sets the kind the typed client leaves empty, for templateOf.
func withKind[T client.Object](obj T, kind string) T {
	obj.GetObjectKind().SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(kind))
	return obj
}

var _ = Describe("spec.restartWorkloads", func() {
	It("restarts each workload owning waiting pods once per generation, and leaves other pods alone", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		web := withKind(newDeployment(ns, "web", demoLabels), "Deployment")
		webRS := newReplicaSet(ns, "web-5d8f", demoLabels, web)
		newPod(ns, "web-5d8f-a", demoLabels, controlledBy(webRS, "ReplicaSet"))
		newPod(ns, "web-5d8f-b", demoLabels, controlledBy(webRS, "ReplicaSet"))
		db := withKind(newStatefulSet(ns, "db", demoLabels), "StatefulSet")
		newPod(ns, "db-0", demoLabels, controlledBy(db, "StatefulSet"))
		agent := withKind(newDaemonSet(ns, "agent", demoLabels), "DaemonSet")
		newPod(ns, "agent-x7k2p", demoLabels, controlledBy(agent, "DaemonSet"))

		By("leaving alone the workloads already recorded, bare pods and ReplicaSets without a Deployment")
		recorded := withKind(newDeployment(ns, "recorded", demoLabels), "Deployment")
		recordedRS := newReplicaSet(ns, "recorded-77c4", demoLabels, recorded)
		newPod(ns, "recorded-77c4-a", demoLabels, controlledBy(recordedRS, "ReplicaSet"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: targets.ProxyContainerName, Image: "apisnoop:dev"}}
		})
		newPod(ns, "bare", demoLabels)
		lonely := newReplicaSet(ns, "lonely", demoLabels, nil)
		newPod(ns, "lonely-a", demoLabels, controlledBy(lonely, "ReplicaSet"))
		By("and workloads whose pods the session does not select")
		other := withKind(newStatefulSet(ns, "other", map[string]string{"app": "other"}), "StatefulSet")
		newPod(ns, "other-0", map[string]string{"app": "other"}, controlledBy(other, "StatefulSet"))

		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.PodSelector = &metav1.LabelSelector{MatchLabels: demoLabels}
			s.Spec.RestartWorkloads = true
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		restartedFor := fmt.Sprintf("%s/1", s.UID)

		for _, w := range []client.Object{web, db, agent} {
			Eventually(annotationsOf(w)).Should(And(
				HaveKeyWithValue(RestartedForAnnotation, restartedFor),
				HaveKeyWithValue(RestartedAtAnnotation, MatchRegexp(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)),
			), "%s %s", w.GetObjectKind().GroupVersionKind().Kind, w.GetName())
		}
		for _, w := range []client.Object{recorded, other} {
			Expect(annotationsOf(w)(Default)).To(BeEmpty(), w.GetName())
		}
		Eventually(restartEvents(s)).Should(ContainElement(fmt.Sprintf(
			"Normal/WorkloadsRestarted: Restarted 3 workloads so that their pods are recorded: DaemonSet %[1]s/agent, Deployment %[1]s/web, StatefulSet %[1]s/db", ns)))
		Eventually(func(g Gomega) string {
			return meta.FindStatusCondition(getSession(s)(g).Status.Conditions, snoopv1alpha1.ConditionRecording).Message
		}).Should(Equal("Recording 1 of 7 target pods; 6 pods created before the session wait for a restart to be recorded; " +
			"2 pods have no Deployment, StatefulSet or DaemonSet to restart; spec.restartWorkloads leaves them alone"))

		By("not restarting them again while their old pods remain, nor when new ones come back unrecorded")
		webAnnotations, webGeneration := templateOf(web)(Default)
		// A second later than the restart, so that the pod is newer than
		// restartedAt: only the session's own mark keeps the workload from
		// another restart.
		time.Sleep(1100 * time.Millisecond)
		newPod(ns, "web-5d8f-c", demoLabels, controlledBy(webRS, "ReplicaSet"))
		Eventually(func(g Gomega) int32 { return getSession(s)(g).Status.Pods.Matched }).Should(BeEquivalentTo(8))
		annotations, generation := templateOf(web)(Default)
		Expect(annotations).To(Equal(webAnnotations))
		Expect(generation).To(Equal(webGeneration))
		Expect(restartEvents(s)(Default)).To(HaveLen(1))

		By("restarting again for a new generation of the session, only the workload whose pods are newer than its restart")
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			got.Spec.Interception = snoopv1alpha1.InterceptionEnv
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(annotationsOf(web)).Should(HaveKeyWithValue(RestartedForAnnotation, fmt.Sprintf("%s/2", s.UID)))
		Eventually(restartEvents(s)).Should(ContainElement(fmt.Sprintf(
			"Normal/WorkloadsRestarted: Restarted 1 workload so that their pods are recorded: Deployment %s/web", ns)))
		Consistently(restartEvents(s), time.Second).Should(HaveLen(2))
		Expect(annotationsOf(db)(Default)).To(HaveKeyWithValue(RestartedForAnnotation, restartedFor))
	})

	It("restarts nothing when false", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		web := withKind(newDeployment(ns, "web", demoLabels), "Deployment")
		webRS := newReplicaSet(ns, "web-5d8f", demoLabels, web)
		newPod(ns, "web-5d8f-a", demoLabels, controlledBy(webRS, "ReplicaSet"))
		db := withKind(newStatefulSet(ns, "db", demoLabels), "StatefulSet")
		newPod(ns, "db-0", demoLabels, controlledBy(db, "StatefulSet"))

		s := newSession(ns, nil)
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		// The restart phase runs before the status is written.
		Eventually(func(g Gomega) {
			got := getSession(s)(g)
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(got.Status.Pods).To(Equal(snoopv1alpha1.PodCounts{Matched: 2, WaitingForRestart: 2}))
		}).Should(Succeed())
		Expect(annotationsOf(web)(Default)).To(BeEmpty())
		Expect(annotationsOf(db)(Default)).To(BeEmpty())
		Expect(meta.FindStatusCondition(getSession(s)(Default).Status.Conditions, snoopv1alpha1.ConditionRecording).Message).
			To(Equal("None of 2 target pods is recorded yet: 2 pods created before the session wait for a restart to be recorded"))
		Expect(restartEvents(s)(Default)).To(BeEmpty())
	})

	It("restarts nothing while the session does not inject or the proxy's certificate is pending", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		web := withKind(newDeployment(ns, "web", demoLabels), "Deployment")
		webRS := newReplicaSet(ns, "web-5d8f", demoLabels, web)
		pod := newPod(ns, "web-5d8f-a", demoLabels, controlledBy(webRS, "ReplicaSet"))
		r := &SnoopSessionReconciler{Client: k8sClient}
		restart := func(mutate func(*snoopv1alpha1.SnoopSession), degraded ...degradation) {
			session := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
				s.Spec.RestartWorkloads = true
				if mutate != nil {
					mutate(s)
				}
			})
			setReady(session, snoopv1alpha1.ReasonReleaseResolved, "resolved")
			_, err := r.restartWorkloads(ctx, &sessionScope{session: session, pods: []corev1.Pod{*pod}, degraded: degraded})
			Expect(err).NotTo(HaveOccurred())
		}

		restart(func(s *snoopv1alpha1.SnoopSession) { s.Spec.Suspend = true })
		restart(func(s *snoopv1alpha1.SnoopSession) { s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(-time.Minute)} })
		restart(nil, degradation{reason: snoopv1alpha1.ReasonCertificatePending})
		Expect(annotationsOf(web)(Default)).To(BeEmpty())
		restart(nil)
		Expect(annotationsOf(web)(Default)).To(HaveKey(RestartedForAnnotation))
	})

	// Two sessions selecting the same pods must not take turns restarting
	// their workload: a restart after the newest waiting pod was created
	// already replaces it, whichever session asked for it.
	DescribeTable("a workload restarted before",
		func(restartedAgo, podAge time.Duration, restartedFor string, wantRestart bool) {
			ns := suite.Namespace(controlPlane, "snoop-test", nil)
			now := time.Now().Truncate(time.Second)
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: demoLabels},
					Template: demoTemplate(demoLabels),
				},
			}
			d.Spec.Template.Annotations = map[string]string{
				RestartedAtAnnotation:  formatTime(now.Add(-restartedAgo)),
				RestartedForAnnotation: restartedFor,
			}
			Expect(k8sClient.Create(ctx, d)).To(Succeed())
			r := &SnoopSessionReconciler{Client: k8sClient, Now: func() time.Time { return now }}
			w := workload{kind: "Deployment", key: client.ObjectKeyFromObject(d), uid: d.UID}
			restarted, err := r.restartWorkload(ctx, w, now.Add(-podAge), "this/1")
			Expect(err).NotTo(HaveOccurred())
			Expect(restarted).To(Equal(wantRestart))
			if wantRestart {
				Expect(annotationsOf(withKind(d, "Deployment"))(Default)).To(Equal(map[string]string{
					RestartedAtAnnotation: formatTime(now), RestartedForAnnotation: "this/1",
				}))
			}
		},
		Entry("by another session, after the pod was created, is not restarted", time.Minute, time.Hour, "other/1", false),
		Entry("by another session, as the pod was created, is not restarted", time.Minute, time.Minute, "other/1", false),
		Entry("by another session, before the pod was created, is restarted", time.Hour, time.Minute, "other/1", true),
		Entry("by an earlier generation of this session, before the pod was created, is restarted", time.Hour, time.Minute, "this/0", true),
		Entry("by this generation, before the pod was created, is not restarted", time.Hour, time.Minute, "this/1", false),
	)

	It("does not restart a workload recreated under its owner's name", func() {
		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		d := newDeployment(ns, "web", demoLabels)
		r := &SnoopSessionReconciler{Client: k8sClient}
		restarted, err := r.restartWorkload(ctx, workload{kind: "Deployment", key: client.ObjectKeyFromObject(d), uid: "not-its-uid"}, time.Now(), "this/1")
		Expect(err).NotTo(HaveOccurred())
		Expect(restarted).To(BeFalse())
		Expect(annotationsOf(withKind(d, "Deployment"))(Default)).To(BeEmpty())
	})
})
