package helm

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// fieldOwner applies the rendered objects.
const fieldOwner = client.FieldOwner("apisnoop-helm-test")

// TestAPIServerAcceptsChart applies what the chart renders to a real
// kube-apiserver, as Helm installs it: the release namespace (created for
// real, under the Pod Security "restricted" level, as values.yaml advises),
// the CRDs of crds/ for real first, then every templated object as a
// server-side dry run, so that what the API server would refuse on
// installation (a wrong field or value, a reference to a namespace that
// does not exist) fails here. It also creates the manager's pod as a dry
// run, so that Pod Security checks it. The release namespace is not
// config/default's, so an object that still names apisnoop-system fails.
func TestAPIServerAcceptsChart(t *testing.T) {
	cases := map[string]map[string]any{
		"defaults":       nil,
		"cert-manager":   certManagerValues(),
		"changed values": changedValues(),
	}
	rendered := map[string][]*unstructured.Unstructured{}
	for name, values := range cases {
		rendered[name] = mustRender(t, otherNamespace, values)
	}

	// Not the project's CRDs: the chart's are applied like the rest, onto
	// an API server that has never seen them.
	c := testenv.StartForTest(t, testenv.WithoutCRDs()).Client
	ctx := t.Context()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   otherNamespace,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace %s: %v", otherNamespace, err)
	}
	// Helm installs crds/ before the templates, and never dry-runs them.
	for _, obj := range rendered["defaults"] {
		if obj.GetKind() == "CustomResourceDefinition" {
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), fieldOwner); err != nil {
				t.Fatalf("apply %s: %v", key(obj), err)
			}
		}
	}

	for name, objs := range rendered {
		t.Run(name, func(t *testing.T) {
			for _, obj := range objs {
				// CRDs are applied for real above. envtest has no
				// cert-manager CRDs to check a Certificate against:
				// TestCertManager checks it by rendering.
				if obj.GetKind() == "CustomResourceDefinition" || obj.GetAPIVersion() == certificateAPIVersion {
					continue
				}
				t.Run(obj.GetKind()+"/"+obj.GetName(), func(t *testing.T) {
					if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), fieldOwner, client.DryRunAll); err != nil {
						t.Errorf("the API server refuses %s: %v", key(obj), err)
					}
				})
			}
			t.Run("manager pod", func(t *testing.T) {
				if err := c.Create(ctx, managerPod(t, objs), client.DryRunAll); err != nil {
					t.Errorf("the API server refuses the manager's pod: %v", err)
				}
			})
		})
	}

	// The checks above can fail: the API server refuses what is wrong.
	t.Run("refused", func(t *testing.T) {
		objs := rendered["defaults"]
		dep := named(t, objs, "Deployment", "apisnoop-controller-manager").DeepCopy()
		if err := unstructured.SetNestedField(dep.Object, int64(1), "spec", "replica"); err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(dep), fieldOwner, client.DryRunAll); err == nil {
			t.Error("the API server accepted a Deployment with an unknown field")
		}

		pod := managerPod(t, objs)
		pod.Spec.SecurityContext = nil
		pod.Spec.Containers[0].SecurityContext = nil
		if err := c.Create(ctx, pod, client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("creating a pod without a security context in %s: %v, want Forbidden by Pod Security", otherNamespace, err)
		}
	})
}

// managerPod is a pod of the manager's Deployment.
func managerPod(t *testing.T, objs []*unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	dep := managerDeployment(t, objs)
	tmpl := dep.Spec.Template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "manager", Namespace: dep.Namespace, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}
}
