package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// terminalError stops a reconcile because the spec must change; it carries
// the condition reason that tells the user what is wrong.
type terminalError struct {
	reason  string
	message string
}

func (e *terminalError) Error() string { return e.reason + ": " + e.message }

// stopWith marks the session not ready for a reason only a spec change can
// fix, and returns the error that stops the reconcile.
func stopWith(session *snoopv1alpha1.SnoopSession, reason, message string) error {
	setCondition(session, snoopv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(session, snoopv1alpha1.ConditionRecording, metav1.ConditionFalse, reason, "Nothing is recorded until the spec is fixed")
	setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, message)
	return &terminalError{reason: reason, message: message}
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
// describes the current spec.
func (r *SnoopSessionReconciler) patchStatus(ctx context.Context, session, base *snoopv1alpha1.SnoopSession, reconcileErr error) error {
	if reconcileErr != nil {
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
