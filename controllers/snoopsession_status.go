package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// stopWith marks the session not ready for a reason only a spec change can
// fix, and returns the terminal error that stops the reconcile without a
// retry. The conditions carry the reason the user sees; patchStatus keeps
// them.
func stopWith(session *snoopv1alpha1.SnoopSession, reason, message string) error {
	setCondition(session, snoopv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(session, snoopv1alpha1.ConditionRecording, metav1.ConditionFalse, reason, "Nothing is recorded until the spec is fixed")
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

// patchStatus writes the status once per reconcile. observedGeneration moves
// only when the reconcile succeeded, so it tells the user the status
// describes the current spec. A terminal error counts as success here: the
// spec was fully judged, and stopWith set the conditions that say why it
// cannot work.
func (r *SnoopSessionReconciler) patchStatus(ctx context.Context, session, base *snoopv1alpha1.SnoopSession, reconcileErr error) error {
	if reconcileErr != nil && !errors.Is(reconcileErr, reconcile.TerminalError(nil)) {
		setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionTrue, snoopv1alpha1.ReasonReconcileError, reconcileErr.Error())
		if meta.FindStatusCondition(session.Status.Conditions, snoopv1alpha1.ConditionReady) == nil {
			setCondition(session, snoopv1alpha1.ConditionReady, metav1.ConditionUnknown, snoopv1alpha1.ReasonReconcileError, "The session could not be reconciled yet")
		}
	} else {
		session.Status.ObservedGeneration = session.Generation
	}
	if equality.Semantic.DeepEqual(session.Status, base.Status) {
		return nil
	}
	// The whole status goes in one merge patch: a diff against the old status
	// would leave out fields that stay zero (requests: 0), which users expect
	// to see in kubectl describe.
	patch, err := json.Marshal(map[string]any{"status": session.Status})
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	if err := r.Status().Patch(ctx, session, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patch status: %w", client.IgnoreNotFound(err))
	}
	return nil
}

// coverageTotals sets the number of operations per level from the catalog,
// keeping what was hit. Percentages have one decimal.
func coverageTotals(c *catalog.Catalog, current snoopv1alpha1.CoverageSummary) snoopv1alpha1.CoverageSummary {
	sum := c.Summary()
	level := func(total int, l snoopv1alpha1.LevelCoverage) snoopv1alpha1.LevelCoverage {
		l.Operations = int32(total)
		l.Percent = percent(l.Hit, l.Operations)
		return l
	}
	return snoopv1alpha1.CoverageSummary{
		Stable:   level(sum.Stable, current.Stable),
		Beta:     level(sum.Beta, current.Beta),
		Alpha:    level(sum.Alpha, current.Alpha),
		Eligible: level(sum.Eligible, current.Eligible),
	}
}

func percent(hit, total int32) string {
	if total == 0 {
		return "0.0"
	}
	return strconv.FormatFloat(float64(hit)*100/float64(total), 'f', 1, 64)
}

// Event reasons and actions of the milestones recordMilestones announces.
const (
	eventPodsInjected       = "PodsInjected"
	eventStopped            = snoopv1alpha1.ReasonStopped
	eventUnsupportedRelease = snoopv1alpha1.ReasonUnsupportedRelease
)

// recordMilestones emits an Event for each milestone this reconcile reached,
// found by comparing the status before (base) and after: more pods injected,
// the session stopped, a release it cannot use. Each is emitted when the
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
	if newly(base, session, snoopv1alpha1.ConditionRecording, snoopv1alpha1.ReasonStopped) {
		stopAt, _ := targets.StopTime(session)
		r.Recorder.Eventf(session, nil, corev1.EventTypeNormal, eventStopped, "Stop",
			"The session stopped at %s; pods created from now on are not injected", stopAt.UTC().Format(time.RFC3339))
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
