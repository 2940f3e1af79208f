// Package targets decides which pods a SnoopSession records: the same rules
// for the controller, which counts them, and the webhook, which injects them.
package targets

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
)

// ProxyContainerName is the name of the injected recording proxy sidecar; a
// pod that has it is recorded.
const ProxyContainerName = "snoop-proxy"

// Selector is a session's spec.targets, parsed.
type Selector struct {
	pods       labels.Selector
	namespaces []string        // explicit namespaces, when listed or defaulted
	nsSelector labels.Selector // when namespaces are selected by label
}

// New parses spec.targets; its errors name the field to fix.
func New(session *snoopv1alpha1.SnoopSession) (*Selector, error) {
	t := session.Spec.Targets
	sel := &Selector{pods: labels.Everything()}
	if t.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(t.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.targets.podSelector: %w", err)
		}
		sel.pods = s
	}
	switch {
	case t.NamespaceSelector != nil:
		s, err := metav1.LabelSelectorAsSelector(t.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.targets.namespaceSelector: %w", err)
		}
		sel.nsSelector = s
	case len(t.Namespaces) > 0:
		sel.namespaces = t.Namespaces
	default:
		sel.namespaces = []string{session.Namespace}
	}
	return sel, nil
}

// Matches reports whether a pod with these labels in namespace ns (with
// nsLabels, needed only for a namespace selector) is a target.
func (s *Selector) Matches(ns string, nsLabels, podLabels map[string]string) bool {
	return s.SelectsNamespace(ns, nsLabels) && s.pods.Matches(labels.Set(podLabels))
}

// SelectsNamespace reports whether the session looks for pods in namespace ns
// (with nsLabels, needed only for a namespace selector).
func (s *Selector) SelectsNamespace(ns string, nsLabels map[string]string) bool {
	if s.nsSelector != nil {
		return s.nsSelector.Matches(labels.Set(nsLabels))
	}
	return slices.Contains(s.namespaces, ns)
}

// SelectsByNamespaceLabels reports whether Matches needs the namespace's
// labels.
func (s *Selector) SelectsByNamespaceLabels() bool { return s.nsSelector != nil }

// ListPods returns the live target pods: those not finished and not being
// deleted.
func (s *Selector) ListPods(ctx context.Context, c client.Reader) ([]corev1.Pod, error) {
	namespaces := s.namespaces
	if s.nsSelector != nil {
		var list corev1.NamespaceList
		if err := c.List(ctx, &list, client.MatchingLabelsSelector{Selector: s.nsSelector}); err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		for _, ns := range list.Items {
			namespaces = append(namespaces, ns.Name)
		}
	}
	var pods []corev1.Pod
	for _, ns := range namespaces {
		var list corev1.PodList
		if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: s.pods}); err != nil {
			return nil, fmt.Errorf("list pods in namespace %s: %w", ns, err)
		}
		for _, pod := range list.Items {
			if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

// Count counts target pods by whether they carry the recording proxy.
func Count(pods []corev1.Pod) snoopv1alpha1.PodCounts {
	counts := snoopv1alpha1.PodCounts{Matched: int32(len(pods))}
	for i := range pods {
		if HasProxy(&pods[i]) {
			counts.Injected++
		} else {
			counts.WaitingForRestart++
		}
	}
	return counts
}

// HasProxy reports whether a pod carries the recording proxy.
func HasProxy(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == ProxyContainerName {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ProxyContainerName {
			return true
		}
	}
	return false
}

// StopTime is when a session stops recording, if it is set to stop: its
// stopAt, or its creation plus its duration.
func StopTime(session *snoopv1alpha1.SnoopSession) (time.Time, bool) {
	switch {
	case session.Spec.StopAt != nil:
		return session.Spec.StopAt.Time, true
	case session.Spec.Duration != nil:
		return session.CreationTimestamp.Add(session.Spec.Duration.Duration), true
	}
	return time.Time{}, false
}

// Active reports whether the session records at time now: it is Ready
// (its release resolved, its spec valid), not suspended, not being deleted
// and not past its stop time.
func Active(session *snoopv1alpha1.SnoopSession, now time.Time) bool {
	if session.Spec.Suspend || session.DeletionTimestamp != nil ||
		!meta.IsStatusConditionTrue(session.Status.Conditions, snoopv1alpha1.ConditionReady) {
		return false
	}
	stopAt, ok := StopTime(session)
	return !ok || now.Before(stopAt)
}

// Injecting reports whether new target pods of the session get the recording
// proxy at time now: the session records pods (not the audit stream) and is
// Active.
func Injecting(session *snoopv1alpha1.SnoopSession, now time.Time) bool {
	return RecordsPods(session) && Active(session, now)
}

// RecordsPods reports whether the session records pods through injected
// proxies, rather than taking the API server's audit stream.
func RecordsPods(session *snoopv1alpha1.SnoopSession) bool {
	return session.Spec.Source != snoopv1alpha1.SourceAudit
}
