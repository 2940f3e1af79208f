package helm

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// chartOnlyFlags are the manager flags the chart passes and config/default
// does not, each with the value the chart gives it by default, which is the
// manager's own default: the chart spells them out because they come from
// values.
var chartOnlyFlags = map[string]string{
	"--skip-namespaces": "kube-system",
	"--cluster-domain":  "cluster.local",
	"--zap-log-level":   "info",
	"--zap-encoder":     "json",
}

// TestMatchesConfigDefault checks that the chart, with its defaults and
// config/default's image tag, installs what config/default installs: the
// same objects under the same names, equal but for the labels and
// annotations Helm adds and the flags in chartOnlyFlags. The Namespace is
// the one object it leaves out: Helm creates the release namespace.
func TestMatchesConfigDefault(t *testing.T) {
	config, err := testenv.RenderConfig("config/default")
	if err != nil {
		t.Fatal(err)
	}
	chart := mustRender(t, configNamespace, map[string]any{"image": map[string]any{"tag": "dev"}})

	want := map[string]*unstructured.Unstructured{}
	for _, obj := range config {
		if obj.GetKind() != "Namespace" {
			want[key(obj)] = obj
		}
	}
	got := map[string]*unstructured.Unstructured{}
	for _, obj := range chart {
		if _, dup := got[key(obj)]; dup {
			t.Errorf("the chart renders %s twice", key(obj))
		}
		got[key(obj)] = obj
	}
	if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got))); diff != "" {
		t.Errorf("objects of config/default (-) and of the chart (+) differ:\n%s", diff)
	}

	for k, configObj := range want {
		chartObj, ok := got[k]
		if !ok {
			continue
		}
		t.Run(k, func(t *testing.T) {
			configObj, chartObj := configObj.DeepCopy(), chartObj.DeepCopy()
			for _, field := range []string{"labels", "annotations"} {
				configMap, _, _ := unstructured.NestedStringMap(configObj.Object, "metadata", field)
				chartMap, _, _ := unstructured.NestedStringMap(chartObj.Object, "metadata", field)
				for name, value := range configMap {
					if got, ok := chartMap[name]; !ok || got != value {
						t.Errorf("metadata.%s[%s] is %q (set: %t), config/default has %q", field, name, got, ok, value)
					}
				}
				unstructured.RemoveNestedField(configObj.Object, "metadata", field)
				unstructured.RemoveNestedField(chartObj.Object, "metadata", field)
			}
			if configObj.GetKind() == "Deployment" {
				compareManagerArgs(t, configObj, chartObj)
			}
			if diff := cmp.Diff(configObj.Object, chartObj.Object); diff != "" {
				t.Errorf("config/default (-) and the chart (+) differ:\n%s", diff)
			}
		})
	}
}

// compareManagerArgs checks the manager container's arguments flag by flag,
// allowing chartOnlyFlags, and removes them from both Deployments.
func compareManagerArgs(t *testing.T, config, chart *unstructured.Unstructured) {
	t.Helper()
	args := func(obj *unstructured.Unstructured) []string {
		containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
		if len(containers) != 1 {
			t.Fatalf("%s has %d containers, want 1", key(obj), len(containers))
		}
		c := containers[0].(map[string]any)
		args, _, _ := unstructured.NestedStringSlice(c, "args")
		delete(c, "args")
		if err := unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		return args
	}
	configArgs, chartArgs := args(config), args(chart)
	passed := map[string]bool{}
	chartArgs = slices.DeleteFunc(chartArgs, func(arg string) bool {
		name, value, _ := strings.Cut(arg, "=")
		want, ok := chartOnlyFlags[name]
		if ok {
			passed[name] = true
			if value != want {
				t.Errorf("manager flag %s is %q by default, want the manager's default %q", name, value, want)
			}
		}
		return ok
	})
	for name := range chartOnlyFlags {
		if !passed[name] {
			t.Errorf("the chart does not pass %s", name)
		}
	}
	if diff := cmp.Diff(configArgs, chartArgs); diff != "" {
		t.Errorf("manager arguments of config/default (-) and of the chart (+) differ:\n%s", diff)
	}
}

// TestManagerRoleMatchesGenerated checks the chart's copy of the manager's
// rules against config/rbac/role.yaml, which controller-gen writes from the
// +kubebuilder:rbac markers, and that the one webhook configuration the
// role may update is the one the chart installs and names to the manager.
func TestManagerRoleMatchesGenerated(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(bytes.TrimPrefix(data, []byte("---\n")), &generated); err != nil {
		t.Fatalf("decode config/rbac/role.yaml: %v", err)
	}
	if len(generated.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml has no rules")
	}

	for _, ns := range []string{configNamespace, otherNamespace} {
		t.Run(ns, func(t *testing.T) {
			objs := mustRender(t, ns, nil)
			var role rbacv1.ClusterRole
			decode(t, named(t, objs, "ClusterRole", "apisnoop-"+generated.Name), &role)
			if diff := cmp.Diff(generated.Rules, role.Rules); diff != "" {
				t.Errorf("rules of config/rbac/role.yaml (-) and of the chart's manager role (+) differ; copy them into charts/kube-apisnoop/templates/manager-rbac.yaml:\n%s", diff)
			}

			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			for _, obj := range objs {
				if obj.GetKind() == "MutatingWebhookConfiguration" {
					decode(t, obj, &mwc)
				}
			}
			var updatable []string
			for _, rule := range role.Rules {
				if slices.Contains(rule.Resources, "mutatingwebhookconfigurations") && slices.Contains(rule.Verbs, "update") {
					updatable = append(updatable, rule.ResourceNames...)
				}
			}
			if !slices.Equal(updatable, []string{mwc.Name}) {
				t.Errorf("the manager may update the webhook configurations %v, want only the chart's %q", updatable, mwc.Name)
			}
			if flag := managerFlags(t, objs)["--webhook-configuration"]; flag != mwc.Name {
				t.Errorf("--webhook-configuration is %q, want the chart's %q", flag, mwc.Name)
			}
		})
	}
}

// TestCRDMatchesGenerated checks that the chart's crds/ holds exactly the
// CRDs controller-gen writes into config/crd/bases; `make helm` copies them.
func TestCRDMatchesGenerated(t *testing.T) {
	read := func(dir string) map[string][]byte {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]byte{}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(f)] = data
		}
		return out
	}
	generated := read(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases"))
	copied := read(filepath.Join(chartDir(), "crds"))
	if len(generated) == 0 {
		t.Fatal("config/crd/bases holds no CRD")
	}
	if !maps.EqualFunc(generated, copied, bytes.Equal) {
		t.Errorf("charts/kube-apisnoop/crds (%v) differs from config/crd/bases (%v): run 'make helm'", slices.Sorted(maps.Keys(copied)), slices.Sorted(maps.Keys(generated)))
	}
}

// TestFollowsReleaseNamespace renders the chart into a namespace other than
// config/default's: the webhook is config/default's with that namespace in
// its clientConfig and its namespaceSelector, the bindings name the service
// account there, and no object names apisnoop-system.
func TestFollowsReleaseNamespace(t *testing.T) {
	config, err := testenv.RenderConfig("config/default")
	if err != nil {
		t.Fatal(err)
	}
	objs := mustRender(t, otherNamespace, nil)

	var want, got admissionregistrationv1.MutatingWebhookConfiguration
	for _, obj := range config {
		if obj.GetKind() == "MutatingWebhookConfiguration" {
			decode(t, obj, &want)
		}
	}
	decode(t, named(t, objs, "MutatingWebhookConfiguration", want.Name), &got)
	if len(want.Webhooks) != 1 {
		t.Fatalf("config/default's webhook configuration has %d webhooks, want 1", len(want.Webhooks))
	}
	wh := &want.Webhooks[0]
	wh.ClientConfig.Service.Namespace = otherNamespace
	values := wh.NamespaceSelector.MatchExpressions[0].Values
	if values[0] != configNamespace {
		t.Fatalf("config/default's namespaceSelector starts with %q, want %q", values[0], configNamespace)
	}
	values[0] = otherNamespace
	// Rules, selectors, policies, timeout, the service and its path.
	if diff := cmp.Diff(want.Webhooks, got.Webhooks); diff != "" {
		t.Errorf("webhooks of config/default in %s (-) and of the chart (+) differ:\n%s", otherNamespace, diff)
	}

	for _, obj := range objs {
		data, err := json.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(configNamespace)) {
			t.Errorf("%s released to %s names %s", key(obj), otherNamespace, configNamespace)
		}
		if obj.GetKind() == "CustomResourceDefinition" || strings.HasPrefix(obj.GetKind(), "Cluster") || obj.GetKind() == "MutatingWebhookConfiguration" {
			if obj.GetNamespace() != "" {
				t.Errorf("cluster-scoped %s has a namespace", key(obj))
			}
		} else if obj.GetNamespace() != otherNamespace {
			t.Errorf("%s is not in the release namespace %s", key(obj), otherNamespace)
		}
		var subjects []rbacv1.Subject
		switch obj.GetKind() {
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			decode(t, obj, &b)
			subjects = b.Subjects
		case "RoleBinding":
			var b rbacv1.RoleBinding
			decode(t, obj, &b)
			subjects = b.Subjects
		}
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && (find(objs, "ServiceAccount", s.Name) == nil || s.Namespace != otherNamespace) {
				t.Errorf("%s binds %s %s/%s, which the chart does not install", key(obj), s.Kind, s.Namespace, s.Name)
			}
		}
	}
}

// managerFlags returns the manager container's flags by name.
func managerFlags(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	manager := managerContainer(t, objs)
	flags := map[string]string{}
	for _, arg := range manager.Args {
		name, value, _ := strings.Cut(arg, "=")
		flags[name] = value
	}
	return flags
}

// managerDeployment returns the chart's one Deployment.
func managerDeployment(t *testing.T, objs []*unstructured.Unstructured) appsv1.Deployment {
	t.Helper()
	var deployments []appsv1.Deployment
	for _, obj := range objs {
		if obj.GetKind() == "Deployment" {
			var d appsv1.Deployment
			decode(t, obj, &d)
			deployments = append(deployments, d)
		}
	}
	if len(deployments) != 1 {
		t.Fatalf("the chart renders %d Deployments, want 1", len(deployments))
	}
	return deployments[0]
}
