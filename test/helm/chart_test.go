// Package helm checks the Helm chart in charts/kube-apisnoop: helm lint
// passes; the chart renders with its defaults, with cert-manager and with
// every value changed; its schema refuses what the templates cannot use; it
// installs what config/default installs, with the same CRD, rules, webhook
// and manager flags, in whatever namespace it is released to; and a real
// kube-apiserver accepts every object it renders (server-side apply, dry
// run).
//
// Helm runs through its Go SDK (helm.sh/helm/v4), as `helm lint --strict`
// and `helm template --include-crds` would.
package helm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

const (
	// releaseName is the release every test renders; the chart's object
	// names do not depend on it.
	releaseName = "apisnoop"
	// configNamespace is where config/default installs the operator.
	configNamespace = "apisnoop-system"
	// otherNamespace is a release namespace that is not config/default's,
	// to show that nothing in the chart assumes apisnoop-system.
	otherNamespace = "snoop-chart"
)

// chartDir is the chart under test.
func chartDir() string {
	return filepath.Join(testenv.RepoRoot(), "charts", "kube-apisnoop")
}

// kubeVersion is the control plane's version, which envtest runs, so that
// the chart renders for the API server that checks it.
func kubeVersion(t *testing.T) *common.KubeVersion {
	t.Helper()
	kv, err := common.ParseKubeVersion("v" + testenv.KubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// certManagerValues turn on cert-manager mode with a ClusterIssuer.
func certManagerValues() map[string]any {
	return map[string]any{"webhook": map[string]any{"certManager": map[string]any{
		"enabled":   true,
		"issuerRef": map[string]any{"name": "apisnoop-ca", "kind": "ClusterIssuer"},
	}}}
}

// render renders the chart as `helm template --include-crds` does, released
// as releaseName to namespace with values over values.yaml, and returns its
// objects in the order Helm emits them (CRDs first).
func render(t *testing.T, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir())
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.IncludeCRDs = true
	install.KubeVersion = kubeVersion(t)
	rel, err := install.RunWithContext(t.Context(), chrt, values)
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("render chart: release of type %T", rel)
	}
	return decodeManifest(r.Manifest)
}

// mustRender is render for values the chart accepts.
func mustRender(t *testing.T, namespace string, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := render(t, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// decodeManifest splits a multi-document YAML stream into objects, skipping
// documents that hold only comments.
func decodeManifest(manifest string) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		// Through JSON, so numbers become int64 and float64 as
		// unstructured requires.
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("convert manifest document: %w", err)
		}
		if s := strings.TrimSpace(string(data)); s == "null" || s == "{}" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("decode manifest document: %w\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

// key names an object by kind, namespace and name.
func key(obj *unstructured.Unstructured) string {
	return obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()
}

// find returns the rendered object of kind with name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, obj := range objs {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	return nil
}

// named returns the rendered object of kind with name.
func named(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	obj := find(objs, kind, name)
	if obj == nil {
		t.Fatalf("the chart renders no %s %s", kind, name)
	}
	return obj
}

// decode converts obj into a typed object, refusing fields the type does not
// have.
func decode(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, into, true); err != nil {
		t.Fatalf("decode %s: %v", key(obj), err)
	}
}

func TestLint(t *testing.T) {
	cases := map[string]map[string]any{
		"defaults":     nil,
		"cert-manager": certManagerValues(),
	}
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = configNamespace
			lint.KubeVersion = kubeVersion(t)
			result := lint.Run([]string{chartDir()}, values)
			// Messages below the warning level (a chart icon is
			// recommended) are advice; with Strict every warning
			// is an error.
			for _, msg := range result.Messages {
				t.Log(msg.Error())
			}
			if result.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", result.TotalChartsLinted)
			}
			for _, err := range result.Errors {
				t.Errorf("helm lint --strict: %v", err)
			}
		})
	}
}

// TestValues checks that the schema and the templates refuse values the
// chart cannot use, with a message naming the value, and accept the forms
// values.yaml documents.
func TestValues(t *testing.T) {
	refused := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown value", map[string]any{"replicas": 2}, "replicas"},
		{"unknown nested value", map[string]any{"webhook": map[string]any{"timeout": 3}}, "timeout"},
		{"webhook timeout above the API server's limit", map[string]any{"webhook": map[string]any{"timeoutSeconds": 31}}, "timeoutSeconds"},
		{"pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
		{"cert-manager without an issuer", map[string]any{"webhook": map[string]any{"certManager": map[string]any{"enabled": true}}}, "issuerRef"},
		{"several replicas without leader election", map[string]any{"replicaCount": 2, "leaderElection": map[string]any{"enabled": false}}, "leaderElection"},
		{"plain HTTP collector", map[string]any{"collector": map[string]any{"url": "http://collector.example:8080/intake"}}, "url"},
		{"log level", map[string]any{"logging": map[string]any{"level": "verbose"}}, "level"},
		{"namespace name", map[string]any{"webhook": map[string]any{"skipNamespaces": []any{"Kube_System"}}}, "skipNamespaces"},
		{"node selector value", map[string]any{"nodeSelector": map[string]any{"disktype": 1}}, "nodeSelector"},
		{"catalog check interval", map[string]any{"catalogCheckInterval": "soon"}, "catalogCheckInterval"},
		{"catalog check interval without a number", map[string]any{"catalogCheckInterval": "s"}, "catalogCheckInterval"},
	}
	for _, tc := range refused {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			_, err := render(t, configNamespace, tc.values)
			if err == nil {
				t.Fatalf("the chart renders with %v", tc.values)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusing %v: %v, want a message naming %s", tc.values, err, tc.want)
			}
		})
	}

	accepted := []struct {
		name   string
		values map[string]any
	}{
		{"log verbosity", map[string]any{"logging": map[string]any{"level": 2, "encoder": "console"}}},
		{"HTTPS collector", map[string]any{"collector": map[string]any{"url": "https://collector.example:8443/intake"}}},
		{"replicas with leader election", map[string]any{"replicaCount": 3}},
		{"no skipped namespaces", map[string]any{"webhook": map[string]any{"skipNamespaces": []any{}}}},
		{"numeric resources", map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": 0.5, "memory": "128Mi"}}}},
		{"global values of a parent chart", map[string]any{"global": map[string]any{"imageRegistry": "registry.example"}}},
		{"catalog check interval", map[string]any{"catalogCheckInterval": "1m30s"}},
		{"catalog check interval of the default", map[string]any{"catalogCheckInterval": "0"}},
	}
	for _, tc := range accepted {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			if _, err := render(t, configNamespace, tc.values); err != nil {
				t.Errorf("rendering with %v: %v", tc.values, err)
			}
		})
	}
}
