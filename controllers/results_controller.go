package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/results"
)

// ReasonFirstRequest is the Event of a session's first recorded request.
const ReasonFirstRequest = "FirstRequestRecorded"

// DefaultResultsInterval is the shortest time between two writes of one
// session's results: batches arriving meanwhile are written together.
const DefaultResultsInterval = 2 * time.Second

// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// ResultsReconciler keeps each session's collected results persisted: it
// loads them into the collector's aggregator when the manager starts, and
// writes them, at a bounded rate, to the session's ConfigMaps (owned by the
// session) and to the status fields the collector owns (server-side apply
// as snoopv1alpha1.FieldOwnerCollector), the path of the session's live
// page included.
type ResultsReconciler struct {
	// Client reads ConfigMaps uncached and writes.
	client.Client
	Aggregator *collector.Aggregator
	Releases   ReleaseResolver
	Recorder   events.EventRecorder
	// Interval is the shortest time between two writes of a session's
	// results; zero means DefaultResultsInterval.
	Interval time.Duration

	lastWrite map[types.NamespacedName]time.Time
}

// Reconcile persists one session's results when they changed.
func (r *ResultsReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	session := &snoopv1alpha1.SnoopSession{}
	if err := r.Get(ctx, req.NamespacedName, session); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.Aggregator.Forget(req.NamespacedName)
			delete(r.lastWrite, req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.countPhases(ctx)
	if session.DeletionTimestamp != nil || !meta.IsStatusConditionTrue(session.Status.Conditions, snoopv1alpha1.ConditionReady) {
		return ctrl.Result{}, nil // nothing is measured without a release
	}
	if !r.Aggregator.Restored(req.NamespacedName) {
		st, _, err := results.Load(ctx, r.Client, session)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("load results of %s: %w", klog.KObj(session), err)
		}
		r.Aggregator.Restore(req.NamespacedName, st)
	}
	interval := r.Interval
	if interval == 0 {
		interval = DefaultResultsInterval
	}
	if wait := interval - time.Since(r.lastWrite[req.NamespacedName]); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	// dirty: a change not written yet, even one that leaves the status as
	// it was (a source's sequence), which must still reach the ConfigMaps.
	st, version, dirty := r.Aggregator.Snapshot(req.NamespacedName)
	cat, err := r.Releases.Resolve(ctx, session.Spec.KubernetesRelease)
	if err != nil {
		return ctrl.Result{}, err
	}
	summary := results.Summary(&st, cat)
	// The manager serves its sessions' results, and their live pages, beside
	// this controller (collector.ResultsAPI), from the aggregator this
	// reconcile has just loaded them into.
	summary.ResultsPage = collector.ResultsPagePath(session.Namespace, session.Name)
	if !dirty {
		// Nothing came in since the last write, so the ConfigMaps are the
		// ones the status names: rendering them again (zstd and the
		// Markdown report, for every status event) only to compare names
		// is skipped.
		summary.ResultsConfigMaps = session.Status.ResultsConfigMaps
		if sameResults(&session.Status, &summary) {
			r.Aggregator.Persisted(req.NamespacedName, version, nil)
			return ctrl.Result{}, nil
		}
		summary.ResultsConfigMaps = nil
	}
	cms, err := results.ConfigMaps(session, &st, cat)
	if err != nil {
		r.Aggregator.Persisted(req.NamespacedName, version, err)
		return ctrl.Result{}, err
	}
	for _, cm := range cms {
		summary.ResultsConfigMaps = append(summary.ResultsConfigMaps, cm.Name)
	}
	err = r.write(ctx, session, cms, &summary)
	r.Aggregator.Persisted(req.NamespacedName, version, err)
	if err != nil {
		return ctrl.Result{}, err
	}
	if r.lastWrite == nil {
		r.lastWrite = map[types.NamespacedName]time.Time{}
	}
	r.lastWrite[req.NamespacedName] = time.Now()
	setOperationsHit(session, &summary)
	if session.Status.Requests == 0 && summary.Requests > 0 && r.Recorder != nil {
		r.Recorder.Eventf(session, nil, corev1.EventTypeNormal, ReasonFirstRequest, "Record",
			"Recorded the first %d requests; results in ConfigMap %s", summary.Requests, cms[0].Name)
	}
	return ctrl.Result{}, nil
}

// write stores the ConfigMaps, removes shards no longer needed, and applies
// the collector's status fields.
func (r *ResultsReconciler) write(ctx context.Context, session *snoopv1alpha1.SnoopSession, cms []*corev1.ConfigMap, summary *snoopv1alpha1.SnoopSessionStatus) error {
	owner := client.FieldOwner(snoopv1alpha1.FieldOwnerCollector)
	keep := map[string]bool{}
	for _, cm := range cms {
		cm.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}
		cm.ManagedFields = nil
		if err := r.Patch(ctx, cm, client.Apply, owner, client.ForceOwnership); err != nil {
			return fmt.Errorf("write results ConfigMap %s: %w", klog.KObj(cm), err)
		}
		keep[cm.Name] = true
	}
	var existing corev1.ConfigMapList
	if err := r.List(ctx, &existing, client.InNamespace(session.Namespace), client.MatchingLabels(results.Labels(session.Name))); err != nil {
		return fmt.Errorf("list results ConfigMaps: %w", err)
	}
	for i := range existing.Items {
		if cm := &existing.Items[i]; !keep[cm.Name] {
			if err := r.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete stale results ConfigMap %s: %w", klog.KObj(cm), err)
			}
		}
	}

	summary.LastUpdateTime = &metav1.Time{Time: time.Now()}
	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(summary)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	owned := map[string]any{}
	for _, field := range []string{"requests", "unknownRequests", "failedRequests", "ignoredRequests", "coverage", "unknownPaths", "clients", "lastUpdateTime", "resultsConfigMaps", "resultsPage"} {
		if v, ok := status[field]; ok {
			owned[field] = v
		}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": snoopv1alpha1.GroupVersion.String(),
		"kind":       "SnoopSession",
		"metadata":   map[string]any{"name": session.Name, "namespace": session.Namespace},
		"status":     owned,
	}}
	if err := r.Status().Patch(ctx, u, client.Apply, owner, client.ForceOwnership); err != nil {
		return fmt.Errorf("apply results status: %w", client.IgnoreNotFound(err))
	}
	return nil
}

// sameResults reports whether the status already shows the summary, so that
// an unchanged session costs no write.
func sameResults(have, want *snoopv1alpha1.SnoopSessionStatus) bool {
	return have.Requests == want.Requests && have.UnknownRequests == want.UnknownRequests &&
		have.FailedRequests == want.FailedRequests && have.IgnoredRequests == want.IgnoredRequests &&
		have.Clients == want.Clients && equality.Semantic.DeepEqual(have.Coverage, want.Coverage) &&
		equality.Semantic.DeepEqual(have.UnknownPaths, want.UnknownPaths) &&
		equality.Semantic.DeepEqual(have.ResultsConfigMaps, want.ResultsConfigMaps) &&
		have.ResultsPage == want.ResultsPage
}

func setOperationsHit(session *snoopv1alpha1.SnoopSession, s *snoopv1alpha1.SnoopSessionStatus) {
	for level, l := range map[string]snoopv1alpha1.LevelCoverage{"stable": s.Coverage.Stable, "beta": s.Coverage.Beta, "alpha": s.Coverage.Alpha, "eligible": s.Coverage.Eligible} {
		collector.OperationsHit.WithLabelValues(session.Namespace, session.Name, level).Set(float64(l.Hit))
	}
}

// countPhases sets the sessions-by-phase gauge from the cache.
func (r *ResultsReconciler) countPhases(ctx context.Context) {
	var list snoopv1alpha1.SnoopSessionList
	if err := r.List(ctx, &list); err != nil {
		return
	}
	phases := map[string]float64{"recording": 0, "waiting": 0, "suspended": 0, "completed": 0}
	for i := range list.Items {
		phases[phaseOf(&list.Items[i])]++
	}
	for phase, n := range phases {
		collector.Sessions.WithLabelValues(phase).Set(n)
	}
}

func phaseOf(s *snoopv1alpha1.SnoopSession) string {
	switch {
	case meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionCompleted):
		return "completed"
	case s.Spec.Suspend:
		return "suspended"
	case meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionRecording):
		return "recording"
	}
	return "waiting"
}

// SetupWithManager watches sessions and the aggregator's changes.
func (r *ResultsReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("results").
		For(&snoopv1alpha1.SnoopSession{}).
		WatchesRawSource(source.Channel(r.Aggregator.Changed, &handler.EnqueueRequestForObject{})).
		Complete(r)
}
