// Package controllers holds the reconcilers of kube-apisnoop. They orchestrate
// only: the work itself lives in internal/ packages.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	"apisnoop.dev/kube-apisnoop/internal/auditscope"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/results"
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

// SnoopSessionReconciler reconciles SnoopSessions. It writes only its own
// part of the status (see ownedStatus), with server-side apply as
// snoopv1alpha1.FieldOwnerController; the collector writes the results.
type SnoopSessionReconciler struct {
	// Client reads sessions, pods and namespaces from the cache, and the
	// proxy certificate Secret and the results ConfigMaps (uncached in the
	// operator: see manager.New); it writes.
	client.Client
	Scheme   *runtime.Scheme
	Releases ReleaseResolver
	// ProxyCertSecret is the recording proxy's serving pair in the
	// operator's namespace; while it does not exist, sessions that inject are
	// Degraded with CertificatePending. Empty skips the check.
	ProxyCertSecret types.NamespacedName
	// Recorder emits the session's milestones as Events (see
	// recordMilestones); nil emits none.
	Recorder events.EventRecorder
	// Collector says when results last arrived, for CollectorUnreachable;
	// nil skips the check. CollectorGrace is how long sidecars may go
	// without results arriving; zero means DefaultCollectorGrace.
	Collector      CollectorSeen
	CollectorGrace time.Duration
	// AuditStream says when audit events last arrived, for NoAuditEvents
	// on sessions with spec.source: audit; nil skips the check.
	AuditStream AuditStreamSeen
	// AuditNamespaces are where sessions with spec.source: audit are taken;
	// elsewhere they stop with AuditSourceNotAllowed (the audit sink skips
	// them too). Empty takes none.
	AuditNamespaces auditscope.Namespaces
	// Now returns the current time; tests replace it.
	Now func() time.Time

	// workloads reads ReplicaSets and workloads for spec.restartWorkloads,
	// uncached (the manager's API reader, set by SetupWithManager).
	workloads client.Reader
}

// sessionPhase is one step of a reconcile. Phases run in order; a phase that
// returns an error stops the chain.
type sessionPhase func(ctx context.Context, s *sessionScope) (ctrl.Result, error)

// sessionScope carries what phases share during one reconcile.
type sessionScope struct {
	session *snoopv1alpha1.SnoopSession
	pods    []corev1.Pod
	// degraded are the reasons, found by phases, that part of the session
	// does not work; they make the Degraded condition.
	degraded []degradation
}

// degradation is one reason for Degraded=True, with its message.
type degradation struct {
	reason, message string
}

func (s *sessionScope) degrade(reason, message string) {
	s.degraded = append(s.degraded, degradation{reason: reason, message: message})
}

// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=list;delete

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
		if err := r.applyStatus(ctx, session, statusBase, retErr); err != nil {
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
	// updateCompletion comes first so that a session stopped with a spec
	// error still says whether it completed.
	phases := []sessionPhase{r.updateCompletion, r.checkAuditSource, r.resolveRelease, r.selectPods, r.checkProxyCertificate, r.checkCollector, r.updateRecording, r.restartWorkloads}
	for _, phase := range phases {
		res, err := phase(ctx, scope)
		if err != nil {
			// A terminal error (stopWith) is not retried: the user must
			// change the spec, and the conditions say what.
			return ctrl.Result{}, err
		}
		result = lowestNonZeroResult(result, res)
	}
	setDegraded(session, scope.degraded)
	return result, nil
}

// reconcileDelete deletes the session's results and lets it go. Workloads
// and their injected pods keep running; the trust objects in target
// namespaces are the TrustReconciler's to remove.
func (r *SnoopSessionReconciler) reconcileDelete(ctx context.Context, session *snoopv1alpha1.SnoopSession) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(session, Finalizer) {
		return ctrl.Result{}, nil
	}
	deleted, err := r.deleteResults(ctx, session)
	if err != nil {
		return ctrl.Result{}, err
	}
	base := session.DeepCopy()
	controllerutil.RemoveFinalizer(session, Finalizer)
	if err := r.Patch(ctx, session, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("SnoopSession released", "snoopSession", klog.KObj(session), "resultsConfigMapsDeleted", deleted)
	return ctrl.Result{}, nil
}

// deleteResults deletes the session's results ConfigMaps and returns how
// many it deleted. They are owned by the session, but the garbage collector
// does not run everywhere (envtest, some clusters) and may run late: the
// finalizer does not wait for it.
func (r *SnoopSessionReconciler) deleteResults(ctx context.Context, session *snoopv1alpha1.SnoopSession) (int, error) {
	var list corev1.ConfigMapList
	if err := r.List(ctx, &list, client.InNamespace(session.Namespace), client.MatchingLabels(results.Labels(session.Name))); err != nil {
		return 0, fmt.Errorf("list results ConfigMaps: %w", err)
	}
	var errs []error
	deleted := 0
	for i := range list.Items {
		cm := &list.Items[i]
		if err := r.Delete(ctx, cm, client.Preconditions{UID: &cm.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete results ConfigMap %s: %w", klog.KObj(cm), err))
			continue
		}
		deleted++
	}
	return deleted, errors.Join(errs...)
}

// checkAuditSource stops a session that takes the audit stream in a
// namespace the operator takes no audit sessions in, saying where it does.
func (r *SnoopSessionReconciler) checkAuditSource(_ context.Context, s *sessionScope) (ctrl.Result, error) {
	if targets.RecordsPods(s.session) || r.AuditNamespaces.Allows(s.session.Namespace) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, stopWith(s.session, snoopv1alpha1.ReasonAuditSourceNotAllowed, fmt.Sprintf(
		"spec.source: audit counts requests from the whole cluster, so this operator takes audit sessions %s (the manager's --audit-session-namespaces, Helm value collector.auditSessionNamespaces): create the session there, or record pods with spec.source: pods",
		r.AuditNamespaces.Describe()))
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
	s.session.Status.Release = c.Release
	setReady(s.session, snoopv1alpha1.ReasonReleaseResolved, fmt.Sprintf("Requests are matched against Kubernetes %s (%d operations)", c.Release, len(c.Operations)))
	return ctrl.Result{}, nil
}

// selectPods lists the target pods and counts them.
func (r *SnoopSessionReconciler) selectPods(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	if !targets.RecordsPods(s.session) {
		s.session.Status.Pods = snoopv1alpha1.PodCounts{}
		return ctrl.Result{}, nil
	}
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

// updateCompletion marks the session Completed once its stop time has
// passed, and says when to look again before that. Completion follows the
// spec, as the webhook (targets.Injecting) and the collector do: a stopAt
// moved into the future makes the session run again, and it completes anew.
func (r *SnoopSessionReconciler) updateCompletion(_ context.Context, s *sessionScope) (ctrl.Result, error) {
	now := r.now()
	stopAt, hasStop := targets.StopTime(s.session)
	switch {
	case hasStop && !now.Before(stopAt):
		// The stop time, not now: a controller that looks late must not
		// move the end of the session. Set once, it stays.
		if s.session.Status.CompletionTime == nil {
			s.session.Status.CompletionTime = &metav1.Time{Time: stopAt}
		}
		setCondition(s.session, snoopv1alpha1.ConditionCompleted, metav1.ConditionTrue, snoopv1alpha1.ReasonCompleted,
			fmt.Sprintf("The session stopped at %s; its results are final", formatTime(s.session.Status.CompletionTime.Time)))
		return ctrl.Result{}, nil
	case s.session.Spec.Suspend:
		setCondition(s.session, snoopv1alpha1.ConditionCompleted, metav1.ConditionFalse, snoopv1alpha1.ReasonSuspended,
			"The session is suspended; it records again when spec.suspend is false")
	case hasStop:
		setCondition(s.session, snoopv1alpha1.ConditionCompleted, metav1.ConditionFalse, snoopv1alpha1.ReasonNotCompleted,
			fmt.Sprintf("The session runs until %s", formatTime(stopAt)))
	default:
		setCondition(s.session, snoopv1alpha1.ConditionCompleted, metav1.ConditionFalse, snoopv1alpha1.ReasonNotCompleted,
			"The session runs until it is deleted, or given spec.stopAt or spec.duration")
	}
	s.session.Status.CompletionTime = nil
	if hasStop {
		return ctrl.Result{RequeueAfter: stopAt.Sub(now)}, nil
	}
	return ctrl.Result{}, nil
}

// checkProxyCertificate degrades a session that injects while the recording
// proxy's serving pair is not issued yet: the webhook admits target pods
// unrecorded until the pair is copied to their namespace.
func (r *SnoopSessionReconciler) checkProxyCertificate(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	if r.ProxyCertSecret.Name == "" || !targets.Injecting(s.session, r.now()) {
		return ctrl.Result{}, nil
	}
	pair := &corev1.Secret{}
	err := r.Get(ctx, r.ProxyCertSecret, pair)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("get the proxy certificate Secret %s: %w", r.ProxyCertSecret, err)
	}
	// The Secret's event requeues the sessions (SetupWithManager).
	if err != nil || len(pair.Data[corev1.TLSCertKey]) == 0 {
		s.degrade(snoopv1alpha1.ReasonCertificatePending, fmt.Sprintf(
			"The recording proxy's certificate (Secret %s) is not issued yet; target pods created until it is are not recorded", r.ProxyCertSecret))
	}
	return ctrl.Result{}, nil
}

// updateRecording says whether the session records now. The cases agree with
// targets.Injecting, the webhook's rule: Stopped and Suspended sessions
// inject nothing, the others inject. Stopped comes first because it is
// final: a suspended session past its stop time will not resume.
//
// Pods waiting for a restart do not make the session Degraded: a pod created
// before the session is expected, not a fault, and stays so until its owner
// rolls it out. The reason and message say how many wait, and the wide
// `kubectl get snoop` shows the reason.
func (r *SnoopSessionReconciler) updateRecording(_ context.Context, s *sessionScope) (ctrl.Result, error) {
	pods := s.session.Status.Pods
	switch stopAt, hasStop := targets.StopTime(s.session); {
	case hasStop && !r.now().Before(stopAt):
		setRecording(s.session, false, snoopv1alpha1.ReasonStopped, fmt.Sprintf("The session stopped at %s", formatTime(stopAt)))
	case s.session.Spec.Suspend:
		setRecording(s.session, false, snoopv1alpha1.ReasonSuspended, "The session is suspended")
	case !targets.RecordsPods(s.session):
		setRecording(s.session, true, snoopv1alpha1.ReasonAuditStream, "Taking "+describeAuditFilter(s.session.Spec.Audit)+" from the API server's audit webhook")
	case pods.Matched == 0:
		setRecording(s.session, false, snoopv1alpha1.ReasonNoTargets, "No running pod matches spec.targets")
	case pods.Injected == 0:
		setRecording(s.session, false, snoopv1alpha1.ReasonPodsWaitingForRestart,
			fmt.Sprintf("None of %d target pods is recorded yet: %s", pods.Matched, waitingMessage(pods.WaitingForRestart)))
	case pods.WaitingForRestart > 0:
		setRecording(s.session, true, snoopv1alpha1.ReasonPodsWaitingForRestart,
			fmt.Sprintf("Recording %d of %d target pods; %s", pods.Injected, pods.Matched, waitingMessage(pods.WaitingForRestart)))
	default:
		setRecording(s.session, true, snoopv1alpha1.ReasonPodsSelected, fmt.Sprintf("Recording all %d target pods", pods.Matched))
	}
	return ctrl.Result{}, nil
}

func waitingMessage(n int32) string {
	if n == 1 {
		return "1 pod created before the session waits for a restart to be recorded"
	}
	return fmt.Sprintf("%d pods created before the session wait for a restart to be recorded", n)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

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
	r.workloads = mgr.GetAPIReader()
	b := ctrl.NewControllerManagedBy(mgr).
		For(&snoopv1alpha1.SnoopSession{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.sessionsForNamespaceOf)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.sessionsSelectingNamespaces))
	if r.ProxyCertSecret.Name != "" {
		// The manager caches only the operator's own Secrets, the proxy
		// pair among them.
		b = b.Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sessionsWaitingForCertificate))
	}
	return b.Named("snoopsession").Complete(r)
}

// sessionsWaitingForCertificate maps an event of the proxy's serving pair to
// every session: any that injects may be waiting for it.
func (r *SnoopSessionReconciler) sessionsWaitingForCertificate(ctx context.Context, obj client.Object) []reconcile.Request {
	if obj.GetNamespace() != r.ProxyCertSecret.Namespace || obj.GetName() != r.ProxyCertSecret.Name {
		return nil
	}
	return r.sessionRequests(ctx, func(*snoopv1alpha1.SnoopSession) bool { return true })
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

// describeAuditFilter says in words which audited requests a session takes.
func describeAuditFilter(f *snoopv1alpha1.AuditFilter) string {
	if f == nil {
		return "every audited request"
	}
	var parts []string
	if users := append(slices.Clone(f.Users), f.ServiceAccounts...); len(users) > 0 {
		parts = append(parts, "by "+strings.Join(users, ", "))
	}
	if len(f.Namespaces) > 0 {
		parts = append(parts, "in namespaces "+strings.Join(f.Namespaces, ", "))
	}
	if len(f.UserAgents) > 0 {
		parts = append(parts, "from user agents "+strings.Join(f.UserAgents, "*, ")+"*")
	}
	if len(parts) == 0 {
		return "every audited request"
	}
	return "the requests " + strings.Join(parts, " ")
}
