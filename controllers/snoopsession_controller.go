// Package controllers holds the reconcilers of kube-apisnoop. They orchestrate
// only: the work itself lives in internal/ packages.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// Finalizer keeps a SnoopSession until its results and injected state are
// cleaned up.
const Finalizer = "snoop.apisnoop.dev/finalizer"

// ReleaseResolver finds the catalog of operations a session's
// kubernetesRelease stands for (releases.Resolver in the operator).
type ReleaseResolver interface {
	// Resolve returns the release's catalog, or an error wrapping
	// catalog.ErrUnsupportedRelease whose message is for the user.
	Resolve(ctx context.Context, release string) (*catalog.Catalog, error)
}

// SnoopSessionReconciler reconciles SnoopSessions.
type SnoopSessionReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Releases ReleaseResolver
	// Recorder emits the session's milestones as Events (see
	// recordMilestones); nil emits none.
	Recorder events.EventRecorder
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// sessionPhase is one step of a reconcile. Phases run in order; a phase that
// returns an error stops the chain.
type sessionPhase func(ctx context.Context, s *sessionScope) (ctrl.Result, error)

// sessionScope carries what phases share during one reconcile.
type sessionScope struct {
	session *snoopv1alpha1.SnoopSession
	catalog *catalog.Catalog
	pods    []corev1.Pod
}

// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings a SnoopSession's status in line with the cluster.
func (r *SnoopSessionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	session := &snoopv1alpha1.SnoopSession{}
	if err := r.Get(ctx, req.NamespacedName, session); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !session.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, session)
	}

	// The finalizer goes on first, alone, so that nothing is set up for a
	// session that could then disappear without clean-up.
	if !controllerutil.ContainsFinalizer(session, Finalizer) {
		base := session.DeepCopy()
		controllerutil.AddFinalizer(session, Finalizer)
		if err := r.Patch(ctx, session, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		return ctrl.Result{}, nil
	}

	statusBase := session.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, session, statusBase, retErr); err != nil {
			// An unwritten status is retried even after a terminal phase:
			// the user must see why the session stopped.
			if errors.Is(retErr, reconcile.TerminalError(nil)) {
				retErr = nil
			}
			retErr = kerrors.NewAggregate([]error{retErr, err})
			return
		}
		// Only once the status is written, so that a failed patch, retried,
		// does not announce the same milestone twice.
		r.recordMilestones(statusBase, session)
	}()

	scope := &sessionScope{session: session}
	phases := []sessionPhase{r.resolveRelease, r.selectPods, r.updateRecording}
	for _, phase := range phases {
		res, err := phase(ctx, scope)
		if err != nil {
			// A terminal error (stopWith) is not retried: the user must
			// change the spec, and the conditions say what.
			return ctrl.Result{}, err
		}
		result = lowestNonZeroResult(result, res)
	}
	setCondition(session, snoopv1alpha1.ConditionDegraded, metav1.ConditionFalse, snoopv1alpha1.ReasonAsExpected, "All parts of the session work")
	return result, nil
}

// reconcileDelete releases what the session holds and lets it go.
func (r *SnoopSessionReconciler) reconcileDelete(ctx context.Context, session *snoopv1alpha1.SnoopSession) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(session, Finalizer) {
		return ctrl.Result{}, nil
	}
	base := session.DeepCopy()
	controllerutil.RemoveFinalizer(session, Finalizer)
	if err := r.Patch(ctx, session, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("SnoopSession released", "snoopSession", klog.KObj(session))
	return ctrl.Result{}, nil
}

// resolveRelease sets status.release, or stops with UnsupportedRelease.
func (r *SnoopSessionReconciler) resolveRelease(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	c, err := r.Releases.Resolve(ctx, s.session.Spec.KubernetesRelease)
	if errors.Is(err, catalog.ErrUnsupportedRelease) {
		return ctrl.Result{}, stopWith(s.session, snoopv1alpha1.ReasonUnsupportedRelease, err.Error())
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("resolve release %q: %w", s.session.Spec.KubernetesRelease, err)
	}
	s.catalog = c
	s.session.Status.Release = c.Release
	s.session.Status.Coverage = coverageTotals(c, s.session.Status.Coverage)
	setReady(s.session, snoopv1alpha1.ReasonReleaseResolved, fmt.Sprintf("Requests are matched against Kubernetes %s (%d operations)", c.Release, len(c.Operations)))
	return ctrl.Result{}, nil
}

// selectPods lists the target pods and counts them.
func (r *SnoopSessionReconciler) selectPods(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	sel, err := targets.New(s.session)
	if err != nil {
		return ctrl.Result{}, stopWith(s.session, snoopv1alpha1.ReasonInvalidSelector, err.Error())
	}
	pods, err := sel.ListPods(ctx, r.Client)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.pods = pods
	s.session.Status.Pods = targets.Count(pods)
	return ctrl.Result{}, nil
}

// updateRecording says whether the session records now, and when to look
// again if it stops at a set time.
func (r *SnoopSessionReconciler) updateRecording(_ context.Context, s *sessionScope) (ctrl.Result, error) {
	now := r.now()
	stopAt, hasStop := targets.StopTime(s.session)
	// The cases agree with targets.Injecting, the webhook's rule: Stopped
	// and Suspended sessions inject nothing, the others inject. Stopped
	// comes first because it is final: a suspended session past its stop
	// time will not resume.
	switch {
	case hasStop && !now.Before(stopAt):
		setRecording(s.session, false, snoopv1alpha1.ReasonStopped, fmt.Sprintf("The session stopped at %s", stopAt.UTC().Format(time.RFC3339)))
		return ctrl.Result{}, nil
	case s.session.Spec.Suspend:
		setRecording(s.session, false, snoopv1alpha1.ReasonSuspended, "The session is suspended")
	case s.session.Status.Pods.Matched == 0:
		setRecording(s.session, false, snoopv1alpha1.ReasonNoTargets, "No running pod matches spec.targets")
	case s.session.Status.Pods.Injected == 0:
		setRecording(s.session, false, snoopv1alpha1.ReasonPodsSelected,
			fmt.Sprintf("%d target pods, none injected yet; pods are recorded once recreated", s.session.Status.Pods.Matched))
	default:
		setRecording(s.session, true, snoopv1alpha1.ReasonPodsSelected,
			fmt.Sprintf("Recording %d of %d target pods", s.session.Status.Pods.Injected, s.session.Status.Pods.Matched))
	}
	if hasStop {
		return ctrl.Result{RequeueAfter: stopAt.Sub(now)}, nil
	}
	return ctrl.Result{}, nil
}

func (r *SnoopSessionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func lowestNonZeroResult(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case a.RequeueAfter < b.RequeueAfter:
		return a
	}
	return b
}

// SetupWithManager registers the reconciler with the manager.
func (r *SnoopSessionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&snoopv1alpha1.SnoopSession{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.sessionsForNamespaceOf)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.sessionsSelectingNamespaces)).
		Named("snoopsession").
		Complete(r)
}

// sessionsForNamespaceOf maps a pod event to the sessions that may target it:
// those of the pod's namespace and those that name or select namespaces.
func (r *SnoopSessionReconciler) sessionsForNamespaceOf(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.sessionRequests(ctx, func(s *snoopv1alpha1.SnoopSession) bool {
		t := s.Spec.Targets
		if t.NamespaceSelector != nil {
			return true
		}
		if len(t.Namespaces) > 0 {
			for _, ns := range t.Namespaces {
				if ns == obj.GetNamespace() {
					return true
				}
			}
			return false
		}
		return s.Namespace == obj.GetNamespace()
	})
}

// sessionsSelectingNamespaces maps a namespace event (its labels may have
// changed) to the sessions that select namespaces by label.
func (r *SnoopSessionReconciler) sessionsSelectingNamespaces(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.sessionRequests(ctx, func(s *snoopv1alpha1.SnoopSession) bool {
		return s.Spec.Targets.NamespaceSelector != nil
	})
}

func (r *SnoopSessionReconciler) sessionRequests(ctx context.Context, wanted func(*snoopv1alpha1.SnoopSession) bool) []reconcile.Request {
	var sessions snoopv1alpha1.SnoopSessionList
	if err := r.List(ctx, &sessions); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Cannot list SnoopSessions")
		return nil
	}
	var requests []reconcile.Request
	for i := range sessions.Items {
		if wanted(&sessions.Items[i]) {
			requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{
				Namespace: sessions.Items[i].Namespace, Name: sessions.Items[i].Name,
			}})
		}
	}
	return requests
}
