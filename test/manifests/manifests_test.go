// Package manifests checks the operator as users install it, rendered from
// config/default: the pod webhook's configuration and Service say what the
// design asks of them and agree with the manager's flags, and a real
// kube-apiserver accepts every object (server-side apply, dry run).
package manifests

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

const (
	// operatorNamespace is where config/default installs the operator.
	operatorNamespace = "apisnoop-system"
	// ignoreLabel opts a namespace or a pod out of the webhook, whatever
	// its value.
	ignoreLabel = "snoop.apisnoop.dev/ignore"
	// fieldOwner applies the rendered objects.
	fieldOwner = client.FieldOwner("apisnoop-manifests-test")
)

// installed is what config/default renders, decoded into the typed objects
// the checks read.
type installed struct {
	objects    []*unstructured.Unstructured
	namespace  *unstructured.Unstructured
	webhook    admissionregistrationv1.MutatingWebhookConfiguration
	service    corev1.Service
	deployment appsv1.Deployment
}

func render(t *testing.T) installed {
	t.Helper()
	objs, err := testenv.RenderConfig("config/default")
	if err != nil {
		t.Fatal(err)
	}
	in := installed{objects: objs}
	in.namespace = only(t, objs, "Namespace")
	decode(t, only(t, objs, "MutatingWebhookConfiguration"), &in.webhook)
	decode(t, named(t, objs, "Service", "apisnoop-webhook-service"), &in.service)
	decode(t, only(t, objs, "Deployment"), &in.deployment)
	return in
}

// only returns the one rendered object of kind.
func only(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, obj := range objs {
		if obj.GetKind() == kind {
			found = append(found, obj)
		}
	}
	if len(found) != 1 {
		t.Fatalf("config/default renders %d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

// named returns the rendered object of kind with name.
func named(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, obj := range objs {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	t.Fatalf("config/default renders no %s %s", kind, name)
	return nil
}

// decode converts obj into a typed object, refusing fields the type does not
// have.
func decode(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, into, true); err != nil {
		t.Fatalf("decode %s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

func TestWebhookConfiguration(t *testing.T) {
	in := render(t)
	cfg := in.webhook
	if cfg.Name != "apisnoop-mutating-webhook-configuration" {
		t.Errorf("MutatingWebhookConfiguration is named %q, want apisnoop-mutating-webhook-configuration", cfg.Name)
	}
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("MutatingWebhookConfiguration has %d webhooks, want 1", len(cfg.Webhooks))
	}
	wh := cfg.Webhooks[0]

	svc := wh.ClientConfig.Service
	switch {
	case svc == nil:
		t.Error("clientConfig names no Service")
	case svc.Name != "apisnoop-webhook-service" || svc.Namespace != operatorNamespace || svc.Path == nil || *svc.Path != "/mutate-v1-pod":
		t.Errorf("clientConfig calls service %s/%s at path %v, want %s/apisnoop-webhook-service at /mutate-v1-pod", svc.Namespace, svc.Name, deref(svc.Path), operatorNamespace)
	case svc.Name != in.service.Name || svc.Namespace != in.service.Namespace:
		t.Errorf("clientConfig calls service %s/%s, but the rendered Service is %s/%s", svc.Namespace, svc.Name, in.service.Namespace, in.service.Name)
	}
	if len(wh.ClientConfig.CABundle) != 0 {
		t.Error("caBundle is set in config/; the manager fills it at run time")
	}
	if wh.FailurePolicy == nil || *wh.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("failurePolicy is %v, want Ignore", deref(wh.FailurePolicy))
	}
	if wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("sideEffects is %v, want None", deref(wh.SideEffects))
	}
	if wh.ReinvocationPolicy == nil || *wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("reinvocationPolicy is %v, want IfNeeded", deref(wh.ReinvocationPolicy))
	}
	if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds > 5 {
		t.Errorf("timeoutSeconds is %v, want at most 5", deref(wh.TimeoutSeconds))
	}

	// The selectors by what they select: the labels the API server sets
	// on namespaces, and the opt-out label with any value.
	namespaces := []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{corev1.LabelMetadataName: "shop"}, true},
		{map[string]string{corev1.LabelMetadataName: "default"}, true},
		{map[string]string{corev1.LabelMetadataName: "shop", ignoreLabel: "true"}, false},
		{map[string]string{corev1.LabelMetadataName: "shop", ignoreLabel: ""}, false},
		{map[string]string{corev1.LabelMetadataName: "shop", ignoreLabel: "false"}, false},
		{map[string]string{corev1.LabelMetadataName: operatorNamespace}, false},
		{map[string]string{corev1.LabelMetadataName: metav1.NamespaceSystem}, false},
	}
	nsSelector := selector(t, "namespaceSelector", wh.NamespaceSelector)
	for _, ns := range namespaces {
		if got := nsSelector.Matches(labels.Set(ns.labels)); got != ns.want {
			t.Errorf("namespaceSelector sends a namespace labelled %v to the webhook: %t, want %t", ns.labels, got, ns.want)
		}
	}
	pods := []struct {
		labels map[string]string
		want   bool
	}{
		{nil, true},
		{map[string]string{"app": "shop"}, true},
		{map[string]string{"app": "shop", ignoreLabel: "true"}, false},
		{map[string]string{ignoreLabel: ""}, false},
	}
	objSelector := selector(t, "objectSelector", wh.ObjectSelector)
	for _, pod := range pods {
		if got := objSelector.Matches(labels.Set(pod.labels)); got != pod.want {
			t.Errorf("objectSelector sends a pod labelled %v to the webhook: %t, want %t", pod.labels, got, pod.want)
		}
	}
}

func selector(t *testing.T, field string, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if s == nil {
		t.Fatalf("%s is not set", field)
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	return sel
}

// TestManagerServesWebhook checks that the manager's flags, ports and
// volumes agree with the webhook's Service and configuration, which kustomize
// names independently of them.
func TestManagerServesWebhook(t *testing.T) {
	in := render(t)
	pod := in.deployment.Spec.Template
	i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "manager" })
	if i < 0 {
		t.Fatal("the Deployment has no container named manager")
	}
	manager := pod.Spec.Containers[i]

	if !labels.SelectorFromSet(in.service.Spec.Selector).Matches(labels.Set(pod.Labels)) || len(in.service.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the manager's pods, labelled %v", in.service.Spec.Selector, pod.Labels)
	}
	if len(in.service.Spec.Ports) != 1 || in.service.Spec.Ports[0].Port != 443 {
		t.Fatalf("Service ports are %+v, want one, 443", in.service.Spec.Ports)
	}
	target := in.service.Spec.Ports[0].TargetPort.String()
	j := slices.IndexFunc(manager.Ports, func(p corev1.ContainerPort) bool { return p.Name == target })
	if j < 0 {
		t.Fatalf("Service targets port %q, which the manager container does not name", target)
	}

	flags := map[string]string{}
	for _, arg := range manager.Args {
		name, value, _ := strings.Cut(arg, "=")
		flags[name] = value
	}
	want := map[string]string{
		"--webhook-port":          fmt.Sprint(manager.Ports[j].ContainerPort),
		"--webhook-service":       in.service.Name,
		"--webhook-configuration": in.webhook.Name,
		"--sidecar-image":         "$(SIDECAR_IMAGE)",
	}
	for name, value := range want {
		if got, ok := flags[name]; !ok || got != value {
			t.Errorf("manager flag %s is %q (set: %t), want %q", name, got, ok, value)
		}
	}
	if _, ok := flags["--leader-elect"]; !ok {
		t.Error("manager runs without --leader-elect")
	}

	// The caBundle in config/ is empty because the manager issues the
	// serving certificate and fills it; with --webhook-cert-dir it would
	// read a pair from files instead and leave the caBundle to someone
	// else, so the API server could never call the webhook.
	if dir, ok := flags["--webhook-cert-dir"]; ok {
		t.Errorf("manager runs with --webhook-cert-dir=%s: the webhook's certificate and caBundle would be left to someone else", dir)
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range manager.Env {
		env[e.Name] = e
	}
	if got := env["SIDECAR_IMAGE"].Value; got != manager.Image {
		t.Errorf("SIDECAR_IMAGE is %q, want the manager's image %q", got, manager.Image)
	}
	if ref := env["POD_NAMESPACE"].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != "metadata.namespace" {
		t.Error("POD_NAMESPACE does not come from the pod's metadata.namespace")
	}
}

// TestBindingsResolve checks what the API server accepts but cannot use: a
// binding to a role or a service account that is not installed grants
// nothing.
func TestBindingsResolve(t *testing.T) {
	in := render(t)
	installed := map[string]bool{}
	for _, obj := range in.objects {
		installed[obj.GetKind()+" "+obj.GetNamespace()+"/"+obj.GetName()] = true
	}
	for _, obj := range in.objects {
		var ref rbacv1.RoleRef
		var subjects []rbacv1.Subject
		switch obj.GetKind() {
		case "RoleBinding":
			var b rbacv1.RoleBinding
			decode(t, obj, &b)
			ref, subjects = b.RoleRef, b.Subjects
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			decode(t, obj, &b)
			ref, subjects = b.RoleRef, b.Subjects
		default:
			continue
		}
		role := ref.Kind + " /" + ref.Name
		if ref.Kind == "Role" {
			role = ref.Kind + " " + obj.GetNamespace() + "/" + ref.Name
		}
		if !installed[role] {
			t.Errorf("%s %s binds %s, which config/default does not install", obj.GetKind(), obj.GetName(), role)
		}
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && !installed["ServiceAccount "+s.Namespace+"/"+s.Name] {
				t.Errorf("%s %s binds service account %s/%s, which config/default does not install", obj.GetKind(), obj.GetName(), s.Namespace, s.Name)
			}
		}
	}
	sa := "ServiceAccount " + in.deployment.Namespace + "/" + in.deployment.Spec.Template.Spec.ServiceAccountName
	if !installed[sa] {
		t.Errorf("the manager runs as %s, which config/default does not install", sa)
	}
}

// TestAPIServerAcceptsConfig applies every rendered object to a real
// kube-apiserver as a server-side dry run, in the operator's namespace
// created for real, so that what the API server would refuse on
// installation (a wrong field or value, a reference to a namespace that does
// not exist) fails here. It also creates the manager's pod as a dry run, so
// that the namespace's Pod Security level is checked against it.
func TestAPIServerAcceptsConfig(t *testing.T) {
	in := render(t)

	// Not the project's CRDs: the rendered one is applied like the rest,
	// onto an API server that has never seen it.
	c := testenv.StartForTest(t, testenv.WithoutCRDs()).Client
	ctx := t.Context()

	if in.namespace.GetName() != operatorNamespace {
		t.Fatalf("config/default renders namespace %q, want %q", in.namespace.GetName(), operatorNamespace)
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(in.namespace.DeepCopy()), fieldOwner); err != nil {
		t.Fatalf("create namespace %s: %v", operatorNamespace, err)
	}

	for _, obj := range in.objects {
		t.Run(obj.GetKind()+"/"+obj.GetName(), func(t *testing.T) {
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), fieldOwner, client.DryRunAll); err != nil {
				t.Errorf("the API server refuses %s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
		})
	}

	managerPod := func() *corev1.Pod {
		tmpl := in.deployment.Spec.Template.DeepCopy()
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "manager", Namespace: in.deployment.Namespace, Labels: tmpl.Labels},
			Spec:       tmpl.Spec,
		}
	}
	t.Run("manager pod", func(t *testing.T) {
		if err := c.Create(ctx, managerPod(), client.DryRunAll); err != nil {
			t.Errorf("the API server refuses the manager's pod: %v", err)
		}
	})

	// The checks above can fail: the API server refuses what is wrong.
	t.Run("refused", func(t *testing.T) {
		dep := only(t, in.objects, "Deployment").DeepCopy()
		if err := unstructured.SetNestedField(dep.Object, int64(1), "spec", "replica"); err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(dep), fieldOwner, client.DryRunAll); err == nil {
			t.Error("the API server accepted a Deployment with an unknown field")
		}

		mwc := only(t, in.objects, "MutatingWebhookConfiguration").DeepCopy()
		webhooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
		webhooks[0].(map[string]any)["timeoutSeconds"] = int64(31)
		if err := unstructured.SetNestedSlice(mwc.Object, webhooks, "webhooks"); err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(mwc), fieldOwner, client.DryRunAll); !apierrors.IsInvalid(err) {
			t.Errorf("applying a webhook with timeoutSeconds 31: %v, want Invalid", err)
		}

		pod := managerPod()
		pod.Spec.SecurityContext = nil
		pod.Spec.Containers[0].SecurityContext = nil
		if err := c.Create(ctx, pod, client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("creating a pod without a security context in %s: %v, want Forbidden by Pod Security", operatorNamespace, err)
		}
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
