package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
)

// stopWith marks the session not ready for a reason only a spec change can
// fix, and returns the terminal error that stops the reconcile without a
// retry. The conditions carry the reason the user sees; applyStatus keeps
// them.
func stopWith(session *snoopv1alpha1.SnoopSession, reason, message string) error {
	setCondition(session, snoopv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(session, snoopv1alpha1.ConditionRecording, metav1.ConditionFalse, reason, "Nothing is recorded until what the Ready condition says is fixed")
	setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, message)
	return reconcile.TerminalError(fmt.Errorf("%s: %s", reason, message))
}

func setReady(session *snoopv1alpha1.SnoopSession, reason, message string) {
	setCondition(session, snoopv1alpha1.ConditionReady, metav1.ConditionTrue, reason, message)
}

func setRecording(session *snoopv1alpha1.SnoopSession, recording bool, reason, message string) {
	status := metav1.ConditionFalse
	if recording {
		status = metav1.ConditionTrue
	}
	setCondition(session, snoopv1alpha1.ConditionRecording, status, reason, message)
}

func setCondition(session *snoopv1alpha1.SnoopSession, conditionType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&session.Status.Conditions, metav1.Condition{
		Type:               conditionType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: session.Generation,
	})
}

// setDegraded sets the Degraded condition from what the phases found: the
// first reason, and every message.
func setDegraded(session *snoopv1alpha1.SnoopSession, degraded []degradation) {
	if len(degraded) == 0 {
		setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionFalse, snoopv1alpha1.ReasonAsExpected, "All parts of the session work")
		return
	}
	messages := make([]string, len(degraded))
	for i, d := range degraded {
		messages[i] = d.message
	}
	setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionTrue, degraded[0].reason, strings.Join(messages, "; "))
}

// ownedStatus is the part of the status the controller writes, as
// snoopv1alpha1.FieldOwnerController; the collector writes the rest. It is
// applied whole each time: a field left out would be removed, so pods is
// always there (matched: 0 shows), and observedGeneration keeps its old
// value when a reconcile fails.
type ownedStatus struct {
	ObservedGeneration int64                   `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition      `json:"conditions,omitempty"`
	Release            string                  `json:"release,omitempty"`
	Pods               snoopv1alpha1.PodCounts `json:"pods"`
	CompletionTime     *metav1.Time            `json:"completionTime,omitempty"`
}

// ownedConditions are the condition types the controller sets; it applies
// only these, so that another writer may own other types.
var ownedConditions = []string{
	snoopv1alpha1.ConditionReady,
	snoopv1alpha1.ConditionRecording,
	snoopv1alpha1.ConditionDegraded,
	snoopv1alpha1.ConditionCompleted,
}

func ownedStatusOf(status *snoopv1alpha1.SnoopSessionStatus) ownedStatus {
	owned := ownedStatus{
		ObservedGeneration: status.ObservedGeneration,
		Release:            status.Release,
		Pods:               status.Pods,
		CompletionTime:     status.CompletionTime,
	}
	for _, c := range status.Conditions {
		if slices.Contains(ownedConditions, c.Type) {
			owned.Conditions = append(owned.Conditions, c)
		}
	}
	return owned
}

// applyStatus writes the controller's part of the status once per
// reconcile, and only when it changed (or the controller does not own it
// yet: a session written before the status had several writers).
// observedGeneration moves only when the reconcile succeeded, so it tells the
// user the status describes the current spec. A terminal error counts as
// success here: the spec was fully judged, and stopWith set the conditions
// that say why it cannot work.
func (r *SnoopSessionReconciler) applyStatus(ctx context.Context, session, base *snoopv1alpha1.SnoopSession, reconcileErr error) error {
	if reconcileErr != nil && !errors.Is(reconcileErr, reconcile.TerminalError(nil)) {
		setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionTrue, snoopv1alpha1.ReasonReconcileError, reconcileErr.Error())
		if meta.FindStatusCondition(session.Status.Conditions, snoopv1alpha1.ConditionReady) == nil {
			setCondition(session, snoopv1alpha1.ConditionReady, metav1.ConditionUnknown, snoopv1alpha1.ReasonReconcileError, "The session could not be reconciled yet")
		}
	} else {
		session.Status.ObservedGeneration = session.Generation
	}
	want := ownedStatusOf(&session.Status)
	if ownsStatus(base) && equality.Semantic.DeepEqual(want, ownedStatusOf(&base.Status)) {
		return nil
	}
	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	apply := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": snoopv1alpha1.GroupVersion.String(),
		"kind":       "SnoopSession",
		"metadata":   map[string]any{"name": session.Name, "namespace": session.Namespace},
		"status":     status,
	}}
	// Forced: the fields are the controller's alone, and a session written
	// by an older operator (one merge patch) has them under another manager.
	if err := r.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(apply),
		client.FieldOwner(snoopv1alpha1.FieldOwnerController), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply status: %w", client.IgnoreNotFound(err))
	}
	return nil
}

// ownsStatus reports whether the controller has applied the session's
// status before.
func ownsStatus(session *snoopv1alpha1.SnoopSession) bool {
	for _, f := range session.ManagedFields {
		if f.Manager == snoopv1alpha1.FieldOwnerController && f.Operation == metav1.ManagedFieldsOperationApply && f.Subresource == "status" {
			return true
		}
	}
	return false
}

// Event reasons and actions of the milestones recordMilestones announces.
const (
	eventPodsInjected       = "PodsInjected"
	eventSessionCompleted   = "SessionCompleted"
	eventUnsupportedRelease = snoopv1alpha1.ReasonUnsupportedRelease
)

// recordMilestones emits an Event for each milestone this reconcile reached,
// found by comparing the status before (base) and after: more pods injected,
// the session completed, a release it cannot use. Each is emitted when the
// status changes, not on every reconcile.
func (r *SnoopSessionReconciler) recordMilestones(base, session *snoopv1alpha1.SnoopSession) {
	if r.Recorder == nil {
		return
	}
	before, after := base.Status.Pods, session.Status.Pods
	if after.Injected > before.Injected {
		r.Recorder.Eventf(session, nil, corev1.EventTypeNormal, eventPodsInjected, "Inject",
			"%d of %d target pods record through the proxy (%d more)", after.Injected, after.Matched, after.Injected-before.Injected)
	}
	if !meta.IsStatusConditionTrue(base.Status.Conditions, snoopv1alpha1.ConditionCompleted) &&
		meta.IsStatusConditionTrue(session.Status.Conditions, snoopv1alpha1.ConditionCompleted) {
		r.Recorder.Eventf(session, nil, corev1.EventTypeNormal, eventSessionCompleted, "Complete",
			"The session stopped at %s; its results are final and pods created from now on are not injected", formatTime(session.Status.CompletionTime.Time))
	}
	if newly(base, session, snoopv1alpha1.ConditionReady, snoopv1alpha1.ReasonUnsupportedRelease) {
		ready := meta.FindStatusCondition(session.Status.Conditions, snoopv1alpha1.ConditionReady)
		r.Recorder.Eventf(session, nil, corev1.EventTypeWarning, eventUnsupportedRelease, "ResolveRelease", "%s", ready.Message)
	}
}

// newly reports whether a condition has reason now and did not have it, with
// the same message, before.
func newly(base, session *snoopv1alpha1.SnoopSession, conditionType, reason string) bool {
	now := meta.FindStatusCondition(session.Status.Conditions, conditionType)
	if now == nil || now.Reason != reason {
		return false
	}
	was := meta.FindStatusCondition(base.Status.Conditions, conditionType)
	return was == nil || was.Reason != reason || was.Message != now.Message
}
