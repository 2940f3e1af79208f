package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

type seenAt time.Time

func (s seenAt) LastBatch(types.NamespacedName) time.Time { return time.Time(s) }

func TestCheckCollector(t *testing.T) {
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	pod := func(running time.Duration) corev1.Pod {
		p := corev1.Pod{
			Spec:   corev1.PodSpec{InitContainers: []corev1.Container{{Name: targets.ProxyContainerName}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
		if running > 0 {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: targets.ProxyContainerName,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-running))}}}}
		}
		return p
	}
	for _, tt := range []struct {
		name     string
		pods     []corev1.Pod
		last     time.Time
		degraded bool
	}{
		{"a sidecar running past the grace, nothing arrived", []corev1.Pod{pod(10 * time.Minute)}, now.Add(-5 * time.Minute), true},
		{"results arrived lately", []corev1.Pod{pod(10 * time.Minute)}, now.Add(-time.Minute), false},
		{"sidecars too young to tell", []corev1.Pod{pod(time.Minute)}, now.Add(-time.Hour), false},
		{"no sidecar running", []corev1.Pod{pod(0)}, now.Add(-time.Hour), false},
		{"no pods", nil, now.Add(-time.Hour), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &SnoopSessionReconciler{Collector: seenAt(tt.last), Now: func() time.Time { return now }}
			s := &sessionScope{session: &snoopv1alpha1.SnoopSession{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"}}, pods: tt.pods}
			if _, err := r.checkCollector(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			got := len(s.degraded) == 1 && s.degraded[0].reason == snoopv1alpha1.ReasonCollectorUnreachable
			if got != tt.degraded {
				t.Errorf("degraded %v (%v), want %v", got, s.degraded, tt.degraded)
			}
		})
	}
}
