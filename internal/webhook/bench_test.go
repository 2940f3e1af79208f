package webhook

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// BenchmarkHandle is the injector's own cost per pod CREATE, without the API
// server: decoding, finding the session in an indexed cache-like reader,
// building the pod and the JSON patch.
func BenchmarkHandle(b *testing.B) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{{"injected", map[string]string{"app": "demo"}}, {"notselected", map[string]string{"app": "other"}}} {
		b.Run(tc.name, func(b *testing.B) {
			h, req := benchInjector(b, tc.labels)
			b.ReportAllocs()
			for b.Loop() {
				if resp := h.Handle(context.Background(), req); !resp.Allowed {
					b.Fatal(resp.Result)
				}
			}
		})
	}
}

func benchInjector(b *testing.B, labels map[string]string) (*PodInjector, admission.Request) {
	b.Helper()
	s := scheme.New()
	session := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "team-a"},
		Spec: snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37",
			Targets: snoopv1alpha1.Targets{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}}},
	}
	meta.SetStatusCondition(&session.Status.Conditions, metav1.Condition{Type: snoopv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ReleaseResolved"})
	c := fake.NewClientBuilder().WithScheme(s).
		WithIndex(&snoopv1alpha1.SnoopSession{}, targets.NamespaceIndex, func(o client.Object) []string { return []string{o.GetNamespace()} }).
		WithObjects(session,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ProxyCertSecret, Namespace: "team-a"}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleConfigMap, Namespace: "team-a"}}).
		Build()
	pod := appPod()
	pod.Labels = labels
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Namespace: "team-a", Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw},
	}}
	return &PodInjector{Client: c, Decoder: admission.NewDecoder(s), Image: "apisnoop:dev"}, req
}
