package helm

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// certificateAPIVersion is cert-manager's Certificate.
const certificateAPIVersion = "cert-manager.io/v1"

// managerContainer returns the Deployment's container named manager.
func managerContainer(t *testing.T, objs []*unstructured.Unstructured) corev1.Container {
	t.Helper()
	pod := managerDeployment(t, objs).Spec.Template.Spec
	i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == "manager" })
	if i < 0 {
		t.Fatal("the Deployment has no container named manager")
	}
	return pod.Containers[i]
}

// webhookConfiguration returns the chart's one MutatingWebhookConfiguration.
func webhookConfiguration(t *testing.T, objs []*unstructured.Unstructured) admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	decode(t, named(t, objs, "MutatingWebhookConfiguration", "apisnoop-mutating-webhook-configuration"), &mwc)
	return mwc
}

// TestCertManager checks both ways the webhook gets its certificate: by
// default the manager issues it and fills the caBundle (no Certificate, no
// mounted pair, no injector annotation); with webhook.certManager.enabled a
// Certificate for the webhook Service's names, its Secret mounted where
// --webhook-cert-dir points, and the CA injector's annotation naming that
// Certificate. cert-manager's CRDs are not in envtest, so this mode is
// checked by rendering, and TestAPIServerAcceptsChart checks its other
// objects.
func TestCertManager(t *testing.T) {
	t.Run("self-managed", func(t *testing.T) {
		objs := mustRender(t, otherNamespace, nil)
		for _, obj := range objs {
			if obj.GetAPIVersion() == certificateAPIVersion {
				t.Errorf("the chart renders %s without cert-manager", key(obj))
			}
		}
		mwc := webhookConfiguration(t, objs)
		if len(mwc.Annotations) != 0 {
			t.Errorf("the webhook configuration is annotated %v", mwc.Annotations)
		}
		if len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
			t.Error("the chart sets a caBundle; the manager fills it")
		}
		if dir, ok := managerFlags(t, objs)["--webhook-cert-dir"]; ok {
			t.Errorf("the manager runs with --webhook-cert-dir=%s: it would leave the caBundle to someone else", dir)
		}
		if pod := managerDeployment(t, objs).Spec.Template.Spec; len(pod.Volumes) != 0 {
			t.Errorf("the manager's pod mounts %v", pod.Volumes)
		}
	})

	t.Run("cert-manager", func(t *testing.T) {
		objs := mustRender(t, otherNamespace, certManagerValues())
		var certs []*unstructured.Unstructured
		for _, obj := range objs {
			if obj.GetAPIVersion() == certificateAPIVersion {
				certs = append(certs, obj)
			}
		}
		if len(certs) != 1 || certs[0].GetKind() != "Certificate" {
			t.Fatalf("the chart renders %d cert-manager objects, want one Certificate", len(certs))
		}
		cert := certs[0]
		if cert.GetNamespace() != otherNamespace {
			t.Errorf("the Certificate is in %q, want the release namespace", cert.GetNamespace())
		}
		secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		issuer, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")

		svc := named(t, objs, "Service", "apisnoop-webhook-service")
		base := svc.GetName() + "." + otherNamespace
		wantNames := []string{svc.GetName(), base, base + ".svc", base + ".svc.cluster.local"}
		if diff := cmp.Diff(wantNames, dnsNames); diff != "" {
			t.Errorf("the Certificate's dnsNames differ from the webhook Service's (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]string{"name": "apisnoop-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, issuer); diff != "" {
			t.Errorf("issuerRef (-want +got):\n%s", diff)
		}

		mwc := webhookConfiguration(t, objs)
		if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], otherNamespace+"/"+cert.GetName(); got != want {
			t.Errorf("cert-manager.io/inject-ca-from is %q, want %q", got, want)
		}
		if len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
			t.Error("the chart sets a caBundle; cert-manager's CA injector fills it")
		}

		dir, ok := managerFlags(t, objs)["--webhook-cert-dir"]
		if !ok || dir == "" {
			t.Fatal("the manager runs without --webhook-cert-dir")
		}
		pod := managerDeployment(t, objs).Spec.Template.Spec
		manager := managerContainer(t, objs)
		i := slices.IndexFunc(manager.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
		if i < 0 {
			t.Fatalf("nothing is mounted at --webhook-cert-dir=%s", dir)
		}
		if !manager.VolumeMounts[i].ReadOnly {
			t.Error("the certificate is mounted writable")
		}
		j := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == manager.VolumeMounts[i].Name })
		if j < 0 || pod.Volumes[j].Secret == nil || pod.Volumes[j].Secret.SecretName != secretName {
			t.Errorf("--webhook-cert-dir=%s is not the Certificate's Secret %q", dir, secretName)
		}
	})
}

// changedValues sets every value away from its default (but
// webhook.certManager, which certManagerValues sets).
func changedValues() map[string]any {
	return map[string]any{
		"image": map[string]any{"repository": "registry.example/apisnoop", "tag": "1.2.3", "pullPolicy": "Never"},
		"sidecar": map[string]any{"image": map[string]any{
			"repository": "registry.example/snoop-proxy",
		}},
		"imagePullSecrets":  []any{map[string]any{"name": "regcred"}},
		"replicaCount":      2,
		"resources":         map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "96Mi"}, "limits": map[string]any{"memory": "1Gi"}},
		"nodeSelector":      map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":       []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "tools", "effect": "NoSchedule"}},
		"affinity":          map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "kubernetes.io/arch", "operator": "In", "values": []any{"amd64"}}}}}}}},
		"priorityClassName": "system-cluster-critical",
		"podAnnotations":    map[string]any{"example.com/scrape": "true"},
		// The selector's label is kept over podLabels.
		"podLabels":            map[string]any{"team": "platform", "app.kubernetes.io/component": "other"},
		"serviceAccount":       map[string]any{"annotations": map[string]any{"example.com/role": "snoop"}},
		"clusterDomain":        "corp.example",
		"catalogCheckInterval": "10s",
		"metrics":              map[string]any{"enabled": false},
		"webhook":              map[string]any{"timeoutSeconds": 5, "skipNamespaces": []any{"kube-system", "monitoring"}},
		"collector":            map[string]any{"url": "https://collector.example/intake", "auditSessionNamespaces": []any{otherNamespace, "conformance"}},
		"logging":              map[string]any{"level": 3, "encoder": "console"},
	}
}

// TestValuesApplied renders the chart with every value away from its
// default and checks each lands where values.yaml says.
func TestValuesApplied(t *testing.T) {
	values := changedValues()
	objs := mustRender(t, otherNamespace, values)
	dep := managerDeployment(t, objs)
	pod := dep.Spec.Template
	manager := managerContainer(t, objs)
	flags := managerFlags(t, objs)

	if manager.Image != "registry.example/apisnoop:1.2.3" || manager.ImagePullPolicy != corev1.PullNever {
		t.Errorf("manager image %q, pull policy %s", manager.Image, manager.ImagePullPolicy)
	}
	env := map[string]string{}
	for _, e := range manager.Env {
		env[e.Name] = e.Value
	}
	if got := env["SIDECAR_IMAGE"]; got != "registry.example/snoop-proxy:1.2.3" || flags["--sidecar-image"] != "$(SIDECAR_IMAGE)" {
		t.Errorf("sidecar image %q, flag %q; want registry.example/snoop-proxy:1.2.3 with image.tag", got, flags["--sidecar-image"])
	}
	if diff := cmp.Diff([]corev1.LocalObjectReference{{Name: "regcred"}}, pod.Spec.ImagePullSecrets); diff != "" {
		t.Errorf("imagePullSecrets (-want +got):\n%s", diff)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", dep.Spec.Replicas)
	}
	wantResources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("96Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	if !sameResources(wantResources, manager.Resources) {
		t.Errorf("resources %v, want %v", manager.Resources, wantResources)
	}
	if pod.Spec.NodeSelector["kubernetes.io/os"] != "linux" || len(pod.Spec.Tolerations) != 1 || pod.Spec.Tolerations[0].Key != "dedicated" ||
		pod.Spec.Affinity == nil || pod.Spec.Affinity.NodeAffinity == nil || pod.Spec.PriorityClassName != "system-cluster-critical" {
		t.Errorf("placement: nodeSelector %v, tolerations %v, affinity %v, priorityClassName %q", pod.Spec.NodeSelector, pod.Spec.Tolerations, pod.Spec.Affinity, pod.Spec.PriorityClassName)
	}
	if pod.Annotations["example.com/scrape"] != "true" || pod.Labels["team"] != "platform" {
		t.Errorf("pod annotations %v, labels %v", pod.Annotations, pod.Labels)
	}
	selector := labels.SelectorFromSet(dep.Spec.Selector.MatchLabels)
	if !selector.Matches(labels.Set(pod.Labels)) {
		t.Errorf("podLabels %v override the selector %v", pod.Labels, dep.Spec.Selector.MatchLabels)
	}
	var sa corev1.ServiceAccount
	decode(t, named(t, objs, "ServiceAccount", pod.Spec.ServiceAccountName), &sa)
	if sa.Annotations["example.com/role"] != "snoop" {
		t.Errorf("service account annotations %v", sa.Annotations)
	}

	wantFlags := map[string]string{
		"--cluster-domain":           "corp.example",
		"--catalog-check-interval":   "10s",
		"--metrics-bind-address":     "0",
		"--skip-namespaces":          "kube-system,monitoring",
		"--collector-url":            "https://collector.example/intake",
		"--audit-session-namespaces": otherNamespace + ",conformance",
		"--zap-log-level":            "3",
		"--zap-encoder":              "console",
		"--leader-elect":             "",
	}
	for name, want := range wantFlags {
		if got, ok := flags[name]; !ok || got != want {
			t.Errorf("manager flag %s is %q (set: %t), want %q", name, got, ok, want)
		}
	}
	if slices.ContainsFunc(manager.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
		t.Error("the manager exposes a metrics port with metrics disabled")
	}
	for _, obj := range []struct{ kind, name string }{
		{"Service", "apisnoop-controller-manager-metrics-service"},
		{"ClusterRole", "apisnoop-metrics-reader"},
	} {
		if find(objs, obj.kind, obj.name) != nil {
			t.Errorf("the chart renders %s %s with metrics disabled", obj.kind, obj.name)
		}
	}

	wh := webhookConfiguration(t, objs).Webhooks[0]
	if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds != 5 {
		t.Errorf("timeoutSeconds %v, want 5", wh.TimeoutSeconds)
	}
	skipped := wh.NamespaceSelector.MatchExpressions[0].Values
	if diff := cmp.Diff([]string{otherNamespace, "kube-system", "monitoring"}, skipped); diff != "" {
		t.Errorf("namespaces the webhook never sees (-want +got):\n%s", diff)
	}

	t.Run("without leader election", func(t *testing.T) {
		objs := mustRender(t, otherNamespace, map[string]any{
			"leaderElection": map[string]any{"enabled": false},
			"webhook":        map[string]any{"skipNamespaces": []any{otherNamespace}},
		})
		flags := managerFlags(t, objs)
		if _, ok := flags["--leader-elect"]; ok {
			t.Error("the manager runs with --leader-elect")
		}
		for _, obj := range objs {
			if obj.GetKind() == "Role" || obj.GetKind() == "RoleBinding" {
				t.Errorf("the chart renders %s without leader election", key(obj))
			}
		}
		// The release namespace once, however often it is listed.
		skipped := webhookConfiguration(t, objs).Webhooks[0].NamespaceSelector.MatchExpressions[0].Values
		if !slices.Equal(skipped, []string{otherNamespace}) {
			t.Errorf("the webhook never sees %v, want [%s]", skipped, otherNamespace)
		}
	})
}

// sameResources compares resource requirements by quantity value, not by the
// way each quantity is written.
func sameResources(a, b corev1.ResourceRequirements) bool {
	same := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for name, q := range x {
			if other, ok := y[name]; !ok || q.Cmp(other) != 0 {
				return false
			}
		}
		return true
	}
	return same(a.Requests, b.Requests) && same(a.Limits, b.Limits)
}
