package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// CollectorSeen says when the collector last took a batch for a session, or
// started if it has taken none (the collector's Aggregator).
type CollectorSeen interface {
	LastBatch(session types.NamespacedName) time.Time
}

// AuditStreamSeen says when the audit sink last took a batch from the API
// server, or started if it has taken none (the collector's AuditSink).
type AuditStreamSeen interface {
	LastEvent() time.Time
}

// DefaultCollectorGrace is how long a recording sidecar may go without a
// batch reaching the collector before the session is Degraded: sidecars
// ship every five seconds and back off to a minute while the collector is
// away.
const DefaultCollectorGrace = 3 * time.Minute

// checkCollector degrades a session whose sidecars run but whose results do
// not arrive: no batch for the session has reached the collector within the
// grace period, while at least one injected pod's sidecar has been running
// for longer than that. A sidecar that cannot reach the collector (network
// policy, DNS, a certificate it does not trust) keeps its counts buffered;
// the user learns it here instead of from a status that stays at zero.
func (r *SnoopSessionReconciler) checkCollector(ctx context.Context, s *sessionScope) (ctrl.Result, error) {
	if !targets.RecordsPods(s.session) {
		return r.checkAuditStream(ctx, s)
	}
	if r.Collector == nil {
		return ctrl.Result{}, nil
	}
	grace := r.collectorGrace()
	now := r.now()
	running := 0
	for i := range s.pods {
		if since, ok := sidecarRunningSince(&s.pods[i]); ok && now.Sub(since) > grace {
			running++
		}
	}
	if running == 0 {
		if len(s.pods) > 0 {
			return ctrl.Result{RequeueAfter: grace}, nil // look again once they may be due
		}
		return ctrl.Result{}, nil
	}
	if last := r.Collector.LastBatch(client.ObjectKeyFromObject(s.session)); now.Sub(last) > grace {
		s.degrade(snoopv1alpha1.ReasonCollectorUnreachable, fmt.Sprintf(
			"%d recording sidecars have run for over %s, and no results have reached the collector since %s; check that they reach it (their logs say why)",
			running, grace, last.UTC().Format(time.RFC3339)))
	}
	return ctrl.Result{RequeueAfter: grace}, nil
}

// sidecarRunningSince is when a pod's recording sidecar started running, if
// it runs.
func sidecarRunningSince(pod *corev1.Pod) (time.Time, bool) {
	if pod.Status.Phase != corev1.PodRunning || !targets.HasProxy(pod) {
		return time.Time{}, false
	}
	for _, st := range pod.Status.InitContainerStatuses {
		if st.Name == targets.ProxyContainerName && st.State.Running != nil {
			return st.State.Running.StartedAt.Time, true
		}
	}
	return time.Time{}, false
}

func (r *SnoopSessionReconciler) collectorGrace() time.Duration {
	if r.CollectorGrace == 0 {
		return DefaultCollectorGrace
	}
	return r.CollectorGrace
}

// checkAuditStream degrades an audit session that records while the API
// server has sent the sink nothing for the grace period: the API server is
// not wired to it (its --audit-webhook-config-file), cannot reach it, or its
// audit policy logs nothing.
func (r *SnoopSessionReconciler) checkAuditStream(_ context.Context, s *sessionScope) (ctrl.Result, error) {
	now := r.now()
	if r.AuditStream == nil || !targets.Active(s.session, now) {
		return ctrl.Result{}, nil
	}
	grace := r.collectorGrace()
	since := s.session.CreationTimestamp.Time
	if last := r.AuditStream.LastEvent(); last.After(since) {
		since = last
	}
	if now.Sub(since) > grace {
		s.degrade(snoopv1alpha1.ReasonNoAuditEvents, fmt.Sprintf(
			"The API server has sent no audit events to the manager since %s; wire its audit webhook backend to the manager (kubectl snoop audit-kubeconfig prints the kubeconfig) and check its audit policy",
			since.UTC().Format(time.RFC3339)))
	}
	return ctrl.Result{RequeueAfter: grace}, nil
}
