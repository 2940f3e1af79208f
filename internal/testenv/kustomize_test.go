package testenv

import (
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestRenderConfig(t *testing.T) {
	objs, err := RenderConfig("config/webhook")
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	var kinds []string
	for _, obj := range objs {
		byKind[obj.GetKind()] = obj
		kinds = append(kinds, obj.GetKind())
	}
	if len(objs) != 2 || byKind["MutatingWebhookConfiguration"] == nil || byKind["Service"] == nil {
		t.Fatalf("config/webhook rendered %v, want one MutatingWebhookConfiguration and one Service", kinds)
	}
	// The base alone keeps kubebuilder's placeholders; config/default
	// renames them.
	svc := byKind["Service"]
	if svc.GetName() != "webhook-service" || svc.GetNamespace() != "system" {
		t.Errorf("Service is %s/%s, want system/webhook-service", svc.GetNamespace(), svc.GetName())
	}
	// Numbers must come out as int64, or unstructured's accessors and
	// DeepCopy fail on them.
	webhooks, _, err := unstructured.NestedSlice(byKind["MutatingWebhookConfiguration"].Object, "webhooks")
	if err != nil || len(webhooks) != 1 {
		t.Fatalf("webhooks: %v (%d of them), want one", err, len(webhooks))
	}
	if _, ok := webhooks[0].(map[string]any)["timeoutSeconds"].(int64); !ok {
		t.Errorf("timeoutSeconds is %T, want int64", webhooks[0].(map[string]any)["timeoutSeconds"])
	}
	ports, _, err := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if err != nil || len(ports) != 1 {
		t.Fatalf("Service ports: %v (%d of them), want one", err, len(ports))
	}
	if port, ok := ports[0].(map[string]any)["port"].(int64); !ok || port != 443 {
		t.Errorf("Service port is %v (%T), want int64 443", ports[0].(map[string]any)["port"], ports[0].(map[string]any)["port"])
	}

	abs, err := RenderConfig(filepath.Join(RepoRoot(), "config", "webhook"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(abs, objs) {
		t.Error("an absolute path rendered other objects than the same directory relative to the repository root")
	}
}

func TestRenderConfigWithoutKustomization(t *testing.T) {
	if _, err := RenderConfig(t.TempDir()); err == nil {
		t.Error("rendering a directory without a kustomization succeeded")
	}
}
