package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// Annotations the controller sets on the pod template of a workload it
// restarts for a session with spec.restartWorkloads.
const (
	// RestartedAtAnnotation is when the workload was restarted, in RFC 3339.
	// A new value changes the pod template, so the workload's controller
	// replaces its pods: the mechanism of `kubectl rollout restart`, under
	// our own key.
	RestartedAtAnnotation = "snoop.apisnoop.dev/restartedAt"
	// RestartedForAnnotation is the session and generation the restart was
	// for, "<session UID>/<generation>". A template that carries the
	// current one is not restarted again: pods that come back without the
	// proxy all the same (the webhook admits pods unrecorded when it
	// fails) must not make the controller roll the workload over and over.
	RestartedForAnnotation = "snoop.apisnoop.dev/restartedFor"
)

const eventWorkloadsRestarted = "WorkloadsRestarted"

// maxNamedWorkloads bounds the workloads the WorkloadsRestarted Event names.
const maxNamedWorkloads = 5

// Workloads are read uncached (workloadReader): a cache would list and watch
// every ReplicaSet, Deployment, StatefulSet and DaemonSet of the cluster for
// a feature few sessions use, and a cached read that lags behind our own
// patch would see no annotation and restart the workload a second time.
// Hence get, not list and watch. Patch is broad (any workload in any
// namespace) because sessions may target any namespace; it is used only for
// the workloads of sessions that set spec.restartWorkloads.
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// workload is a Deployment, StatefulSet or DaemonSet that owns target pods.
type workload struct {
	kind string
	key  types.NamespacedName
	uid  types.UID // from the owner reference: a workload recreated under the same name is not the owner
}

func (w workload) String() string { return w.kind + " " + w.key.String() }

// restartWorkloads restarts, for a session with spec.restartWorkloads, the
// workloads that own target pods without the recording proxy, so that the
// webhook injects their replacements. A ReplicaSet's pods restart through
// its Deployment; bare pods, ReplicaSets without a Deployment and other
// owners (Jobs, custom controllers) are left alone and counted in the
// Recording condition's message, which is why this phase runs after
// updateRecording.
//
// It does nothing while the session does not inject (targets.Injecting) or
// while the proxy's certificate is pending: the new pods would be admitted
// unrecorded and the restart, done once per generation, would be spent.
//
// A workload is not restarted when its template already carries this
// session's generation (RestartedForAnnotation), nor when its last restart
// (by any session) came after its newest waiting pod was created: that
// rollout already replaces the pod, so two sessions do not take turns at
// restarting the same workload. A StatefulSet or DaemonSet with the
// OnDelete update strategy, or a paused Deployment, takes the new template
// only when its pods are deleted or it is resumed, as with kubectl.
func (r *SnoopSessionReconciler) restartWorkloads(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	session := s.session
	if !session.Spec.RestartWorkloads || !targets.Injecting(session, r.now()) || s.degradedBy(snoopv1alpha1.ReasonCertificatePending) {
		return ctrl.Result{}, nil
	}
	owners, unowned, err := r.waitingWorkloads(ctx, s.pods)
	if err != nil {
		return ctrl.Result{}, err
	}
	if unowned > 0 {
		noteUnowned(session, unowned)
	}

	restartedFor := fmt.Sprintf("%s/%d", session.UID, session.Generation)
	var restarted []workload
	var errs []error
	for _, w := range slices.SortedFunc(maps.Keys(owners), compareWorkloads) {
		done, err := r.restartWorkload(ctx, w, owners[w], restartedFor)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			ctrl.LoggerFrom(ctx).Info("Workload restarted so that its pods are recorded",
				lowerFirst(w.kind), klog.KRef(w.key.Namespace, w.key.Name), "snoopSession", klog.KObj(session))
			restarted = append(restarted, w)
		}
	}
	if len(restarted) > 0 && r.Recorder != nil {
		r.Recorder.Eventf(session, nil, corev1.EventTypeNormal, eventWorkloadsRestarted, "Restart",
			"Restarted %s so that their pods are recorded: %s", countWorkloads(len(restarted)), nameWorkloads(restarted))
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, fmt.Errorf("restart workloads: %w", err)
	}
	return ctrl.Result{}, nil
}

// waitingWorkloads finds the workloads owning target pods that wait for a
// restart, each with the creation time of its newest waiting pod, and counts
// the waiting pods no workload it can restart owns. Pods that opted out with
// snoop.apisnoop.dev/ignore are skipped: a restart would not inject them.
func (r *SnoopSessionReconciler) waitingWorkloads(ctx context.Context, pods []corev1.Pod) (map[workload]time.Time, int, error) {
	owners := map[workload]time.Time{}
	replicaSets := map[types.UID]*workload{} // of this reconcile, so that each is read once
	unowned := 0
	for i := range pods {
		pod := &pods[i]
		if targets.HasProxy(pod) {
			continue
		}
		if _, ignored := pod.Labels[snoopv1alpha1.IgnoreLabel]; ignored {
			continue
		}
		w, err := r.ownerOf(ctx, pod, replicaSets)
		if err != nil {
			return nil, 0, err
		}
		if w == nil {
			unowned++
			continue
		}
		if newest, seen := owners[*w]; !seen || pod.CreationTimestamp.After(newest) {
			owners[*w] = pod.CreationTimestamp.Time
		}
	}
	return owners, unowned, nil
}

// ownerOf returns the workload that controls a pod, through its ReplicaSet
// for a Deployment, or nil when no Deployment, StatefulSet or DaemonSet does.
func (r *SnoopSessionReconciler) ownerOf(ctx context.Context, pod *corev1.Pod, replicaSets map[types.UID]*workload) (*workload, error) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || !isApps(ref) {
		return nil, nil
	}
	switch ref.Kind {
	case "StatefulSet", "DaemonSet":
		return &workload{kind: ref.Kind, key: types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, uid: ref.UID}, nil
	case "ReplicaSet":
	default:
		return nil, nil
	}
	if w, ok := replicaSets[ref.UID]; ok {
		return w, nil
	}
	rs := &appsv1.ReplicaSet{}
	err := r.workloadReader().Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, rs)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get ReplicaSet %s of pod %s: %w", ref.Name, klog.KObj(pod), err)
	}
	var w *workload
	// A ReplicaSet gone, or recreated under the same name, is not this
	// pod's owner any more: the pod goes with it or is orphaned.
	if err == nil && rs.UID == ref.UID {
		if d := metav1.GetControllerOf(rs); d != nil && isApps(d) && d.Kind == "Deployment" {
			w = &workload{kind: d.Kind, key: types.NamespacedName{Namespace: rs.Namespace, Name: d.Name}, uid: d.UID}
		}
	}
	replicaSets[ref.UID] = w
	return w, nil
}

func isApps(ref *metav1.OwnerReference) bool {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == appsv1.GroupName
}

// restartWorkload sets the restart annotations on a workload's pod template
// with a merge patch, unless it was restarted for this generation already or
// after its newest waiting pod was created. It reports whether it patched.
func (r *SnoopSessionReconciler) restartWorkload(ctx context.Context, w workload, newestPod time.Time, restartedFor string) (bool, error) {
	obj, template := newWorkloadObject(w.kind)
	if err := r.workloadReader().Get(ctx, w.key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil // its pods go with it
		}
		return false, fmt.Errorf("get %s: %w", w, err)
	}
	if obj.GetUID() != w.uid {
		return false, nil
	}
	annotations := template().Annotations
	if annotations[RestartedForAnnotation] == restartedFor {
		return false, nil
	}
	if at, err := time.Parse(time.RFC3339, annotations[RestartedAtAnnotation]); err == nil && !at.Before(newestPod) {
		return false, nil
	}
	base := obj.DeepCopyObject().(client.Object)
	t := template()
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[RestartedAtAnnotation] = formatTime(r.now())
	t.Annotations[RestartedForAnnotation] = restartedFor
	if err := r.Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("restart %s: %w", w, err)
	}
	return true, nil
}

// newWorkloadObject returns an empty object of a workload kind and a
// function returning its pod template.
func newWorkloadObject(kind string) (client.Object, func() *corev1.PodTemplateSpec) {
	switch kind {
	case "StatefulSet":
		o := &appsv1.StatefulSet{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case "DaemonSet":
		o := &appsv1.DaemonSet{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	default:
		o := &appsv1.Deployment{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	}
}

// workloadReader reads ReplicaSets and workloads: the manager's API reader
// (uncached, see the RBAC markers above), or the client when the reconciler
// was not set up with a manager.
func (r *SnoopSessionReconciler) workloadReader() client.Reader {
	if r.workloads != nil {
		return r.workloads
	}
	return r.Client
}

// noteUnowned adds to the Recording condition's message how many waiting pods
// spec.restartWorkloads cannot restart.
func noteUnowned(session *snoopv1alpha1.SnoopSession, n int) {
	recording := meta.FindStatusCondition(session.Status.Conditions, snoopv1alpha1.ConditionRecording)
	if recording == nil {
		return
	}
	note := "1 pod has no Deployment, StatefulSet or DaemonSet to restart; spec.restartWorkloads leaves it alone"
	if n != 1 {
		note = fmt.Sprintf("%d pods have no Deployment, StatefulSet or DaemonSet to restart; spec.restartWorkloads leaves them alone", n)
	}
	setCondition(session, snoopv1alpha1.ConditionRecording, recording.Status, recording.Reason, recording.Message+"; "+note)
}

func (s *sessionScope) degradedBy(reason string) bool {
	return slices.ContainsFunc(s.degraded, func(d degradation) bool { return d.reason == reason })
}

func countWorkloads(n int) string {
	if n == 1 {
		return "1 workload"
	}
	return fmt.Sprintf("%d workloads", n)
}

func nameWorkloads(ws []workload) string {
	names := make([]string, 0, maxNamedWorkloads+1)
	for i, w := range ws {
		if i == maxNamedWorkloads {
			names = append(names, fmt.Sprintf("and %d more", len(ws)-i))
			break
		}
		names = append(names, w.String())
	}
	return strings.Join(names, ", ")
}

func compareWorkloads(a, b workload) int {
	return strings.Compare(a.String(), b.String())
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
