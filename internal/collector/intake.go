package collector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// errForbidden is a token of a pod that no session records, or a batch
// that claims another pod's source.
var errForbidden = errors.New("forbidden")

// Intake serves intake.Path: batches from sidecars.
type Intake struct {
	Tokens *TokenReviewer
	// Client reads pods, sessions and namespaces from the manager's cache.
	Client     client.Reader
	Aggregator *Aggregator
	// Elected is closed once this replica leads; only the leader merges
	// and persists, the others answer 503 and the sidecar retries. Nil
	// means always.
	Elected <-chan struct{}
	// MaxBytes caps a batch's body; zero means intake.DefaultMaxBytes.
	MaxBytes int64
	// PersistTimeout bounds the wait for a batch's results to be
	// persisted; zero means 8 seconds, below the sidecar's timeout.
	PersistTimeout time.Duration
	// Now is the clock sessions' stop times are read against; nil is
	// time.Now.
	Now func() time.Time
}

func (h *Intake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	result, status, err := h.serve(r)
	BatchesTotal.WithLabelValues(result).Inc()
	if err != nil {
		if status >= 500 {
			w.Header().Set("Retry-After", "2")
			ctrl.LoggerFrom(r.Context()).V(1).Info("Batch not taken", "result", result, "error", err.Error())
		} else {
			ctrl.LoggerFrom(r.Context()).Info("Batch refused", "result", result, "error", err.Error())
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.WriteHeader(status)
}

func (h *Intake) serve(r *http.Request) (result string, status int, err error) {
	ctx := r.Context()
	if h.Elected != nil {
		select {
		case <-h.Elected:
		default:
			return ResultUnavailable, http.StatusServiceUnavailable, errors.New("this manager replica is not the leader")
		}
	}
	id, err := h.Tokens.Review(ctx, intake.Token(r))
	if errors.Is(err, errUnauthenticated) {
		return ResultUnauthenticated, http.StatusUnauthorized, err
	} else if err != nil {
		return ResultUnavailable, http.StatusServiceUnavailable, err
	}
	batch, err := intake.ReadRequest(r, h.MaxBytes)
	if err != nil {
		return ResultMalformed, intake.StatusOf(err), err
	}
	if batch.Source != id.UID {
		return ResultForbidden, http.StatusForbidden, fmt.Errorf("%w: the batch's source %q is not the token's pod %s", errForbidden, batch.Source, id.UID)
	}
	session, err := h.sessionOf(ctx, id)
	if errors.Is(err, errForbidden) {
		return ResultForbidden, http.StatusForbidden, err
	} else if err != nil {
		return ResultUnavailable, http.StatusServiceUnavailable, err
	}
	if !sameRelease(batch.Release, session) {
		return ResultReleaseMismatch, http.StatusConflict, fmt.Errorf("the batch was matched against %q, session %s measures against %q", batch.Release, klog.KObj(session), session.Status.Release)
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	ignore := !targets.Injecting(session, now)
	duplicate, persisted, err := h.Aggregator.Accept(client.ObjectKeyFromObject(session), batch, ignore)
	if err != nil {
		return ResultUnavailable, http.StatusServiceUnavailable, err
	}
	timeout := h.PersistTimeout
	if timeout == 0 {
		timeout = 8 * time.Second
	}
	select {
	case err := <-persisted:
		if err != nil {
			return ResultUnavailable, http.StatusServiceUnavailable, fmt.Errorf("persist results: %w", err)
		}
	case <-time.After(timeout):
		return ResultUnavailable, http.StatusServiceUnavailable, errors.New("results not persisted in time")
	case <-ctx.Done():
		return ResultUnavailable, http.StatusServiceUnavailable, ctx.Err()
	}
	switch {
	case duplicate:
		return ResultDuplicate, http.StatusOK, nil
	case ignore:
		return ResultIgnored, http.StatusOK, nil
	}
	RequestsTotal.Add(float64(batch.Delta.Requests))
	return ResultAccepted, http.StatusOK, nil
}

// sessionOf is the session that injected the token's pod and still selects
// it.
func (h *Intake) sessionOf(ctx context.Context, id PodIdentity) (*snoopv1alpha1.SnoopSession, error) {
	pod := &corev1.Pod{}
	if err := h.Client.Get(ctx, types.NamespacedName{Namespace: id.Namespace, Name: id.Pod}, pod); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, fmt.Errorf("%w: pod %s/%s does not exist", errForbidden, id.Namespace, id.Pod)
		}
		return nil, err
	}
	if string(pod.UID) != id.UID {
		return nil, fmt.Errorf("%w: pod %s/%s is another pod than the token's", errForbidden, id.Namespace, id.Pod)
	}
	ref := pod.Annotations[webhook.AnnotationSession]
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		return nil, fmt.Errorf("%w: pod %s/%s was not injected by a session", errForbidden, id.Namespace, id.Pod)
	}
	session := &snoopv1alpha1.SnoopSession{}
	if err := h.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, session); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, fmt.Errorf("%w: session %s of pod %s/%s does not exist", errForbidden, ref, id.Namespace, id.Pod)
		}
		return nil, err
	}
	sel, err := targets.New(session)
	if err != nil {
		return nil, fmt.Errorf("%w: session %s: %w", errForbidden, ref, err)
	}
	var nsLabels map[string]string
	if sel.SelectsByNamespaceLabels() {
		namespace := &corev1.Namespace{}
		if err := h.Client.Get(ctx, types.NamespacedName{Name: pod.Namespace}, namespace); err != nil {
			return nil, err
		}
		nsLabels = namespace.Labels
	}
	if !sel.Matches(pod.Namespace, nsLabels, pod.Labels) {
		return nil, fmt.Errorf("%w: session %s does not select pod %s/%s", errForbidden, ref, id.Namespace, id.Pod)
	}
	return session, nil
}

// sameRelease reports whether a sidecar matched against the session's
// release: "1.37", or for the live cluster "cluster v1.37.2" (any version:
// the cluster may be upgraded under a running pod).
func sameRelease(batchRelease string, s *snoopv1alpha1.SnoopSession) bool {
	if s.Spec.KubernetesRelease == snoopv1alpha1.ClusterRelease {
		return strings.HasPrefix(batchRelease, snoopv1alpha1.ClusterRelease)
	}
	return batchRelease == s.Spec.KubernetesRelease
}
