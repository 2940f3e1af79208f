package webhook

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// appPod is a pod as it reaches mutating webhooks: with the service account
// volume the ServiceAccount admission plugin added.
func appPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team-a"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "default",
			InitContainers:     []corev1.Container{{Name: "migrate", Image: "app:dev"}},
			Containers: []corev1.Container{{Name: "app", Image: "app:dev", Env: []corev1.EnvVar{
				{Name: "KUBERNETES_SERVICE_HOST", Value: "10.96.0.1"}, {Name: "LOG", Value: "debug"},
			}}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
						Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				},
			}}}},
		},
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func env(c corev1.Container, name string) []string {
	var values []string
	for _, e := range c.Env {
		if e.Name == name {
			values = append(values, e.Value)
		}
	}
	return values
}

func TestInjectIPTables(t *testing.T) {
	pod := appPod()
	in := Injection{Session: "team-a/demo", Release: "1.37", Mode: snoopv1alpha1.InterceptionIPTables, Image: "apisnoop:dev",
		CollectorURL: "https://apisnoop-collector.apisnoop-system.svc:8443/v1/deltas"}
	if !Inject(pod, in) {
		t.Fatal("Inject reported no change")
	}
	if got, want := names(pod.Spec.InitContainers), []string{targets.ProxyContainerName, IPTablesContainerName, "migrate"}; !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("init containers %v, want %v", got, want)
	}
	proxy := pod.Spec.InitContainers[0]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways || proxy.StartupProbe == nil {
		t.Error("the proxy is not a native sidecar with a startup probe")
	}
	if *proxy.SecurityContext.RunAsUser != ProxyUID {
		t.Errorf("proxy runs as %d, the rules exclude %d", *proxy.SecurityContext.RunAsUser, ProxyUID)
	}
	for _, want := range []string{"--release=1.37", "--collector=" + in.CollectorURL, "--collector-token-file=/var/run/apisnoop/token/token"} {
		if !slices.Contains(proxy.Args, want) {
			t.Errorf("proxy args %v lack %s", proxy.Args, want)
		}
	}
	ipt := pod.Spec.InitContainers[1]
	if caps := ipt.SecurityContext.Capabilities.Add; len(caps) != 2 {
		t.Errorf("iptables container capabilities %v", caps)
	}
	if got := env(pod.Spec.Containers[0], "KUBERNETES_SERVICE_HOST"); len(got) != 1 || got[0] != "10.96.0.1" {
		t.Errorf("iptables mode changed the app's environment: %v", got)
	}
	if cm := pod.Spec.Volumes[0].Projected.Sources[1].ConfigMap.Name; cm != TrustBundleConfigMap {
		t.Errorf("service account CA comes from %s, want %s", cm, TrustBundleConfigMap)
	}
	// The service account's, the serving pair, the trust bundle and the
	// collector token (the injection names a collector).
	if len(pod.Spec.Volumes) != 4 {
		t.Errorf("volumes %d, want the service account's and three", len(pod.Spec.Volumes))
	}
	if !slices.Contains(proxy.Args, "--upstream-ca-file=/var/run/apisnoop/trust/ca.crt") {
		t.Errorf("proxy args %v: the upstream is not verified with the trust bundle", proxy.Args)
	}
	if pod.Annotations[AnnotationSession] != "team-a/demo" {
		t.Errorf("annotations %v", pod.Annotations)
	}

	again := pod.DeepCopy()
	if Inject(again, in) || !equality.Semantic.DeepEqual(again, pod) {
		t.Error("a second injection changed the pod")
	}
}

func TestInjectEnv(t *testing.T) {
	pod := appPod()
	Inject(pod, Injection{Session: "team-a/demo", Release: "1.37", Mode: snoopv1alpha1.InterceptionEnv, Image: "apisnoop:dev",
		KeepBodies: true, MaxBodyBytes: 4096})
	if got, want := names(pod.Spec.InitContainers), []string{targets.ProxyContainerName, "migrate"}; !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("init containers %v, want %v", got, want)
	}
	for _, c := range []corev1.Container{pod.Spec.InitContainers[1], pod.Spec.Containers[0]} {
		if got := env(c, "KUBERNETES_SERVICE_HOST"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("%s: KUBERNETES_SERVICE_HOST %v", c.Name, got)
		}
		if got := env(c, "KUBERNETES_SERVICE_PORT"); len(got) != 1 || got[0] != "15443" {
			t.Errorf("%s: KUBERNETES_SERVICE_PORT %v", c.Name, got)
		}
	}
	if got := env(pod.Spec.Containers[0], "LOG"); len(got) != 1 {
		t.Error("other variables were lost")
	}
	if env(pod.Spec.InitContainers[0], "KUBERNETES_SERVICE_HOST") != nil {
		t.Error("the proxy itself was pointed at the proxy")
	}
	proxy := pod.Spec.InitContainers[0]
	for _, want := range []string{"--keep-bodies", "--max-body-bytes=4096"} {
		if !slices.Contains(proxy.Args, want) {
			t.Errorf("proxy args %v lack %s", proxy.Args, want)
		}
	}
	if slices.Contains(proxy.Args, "--collector-token-file=/var/run/apisnoop/token/token") {
		t.Error("a collector token without a collector")
	}
}

func TestInjectClusterRelease(t *testing.T) {
	pod := appPod()
	Inject(pod, Injection{Session: "team-a/demo", Release: snoopv1alpha1.ClusterRelease, Image: "apisnoop:dev"})
	proxy := pod.Spec.InitContainers[0]
	if !slices.Contains(proxy.Args, "--catalog-file=/var/run/apisnoop/catalog/catalog.json.zst") || !slices.Contains(proxy.Args, "--release=cluster") {
		t.Errorf("proxy args %v: want the catalog file, and the release cluster to fall back to", proxy.Args)
	}
	if !slices.Contains(proxy.Args, "--schemas-file=/var/run/apisnoop/catalog/schemas.json.zst") {
		t.Errorf("proxy args %v: want the schemas file beside the catalog", proxy.Args)
	}
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == CatalogConfigMap
	}) {
		t.Error("no volume of the catalog ConfigMap")
	}
	embedded := appPod()
	Inject(embedded, Injection{Session: "team-a/demo", Release: "1.37", Image: "apisnoop:dev"})
	if slices.ContainsFunc(embedded.Spec.Volumes, func(v corev1.Volume) bool { return v.ConfigMap != nil && v.ConfigMap.Name == CatalogConfigMap }) {
		t.Error("an embedded release mounts the catalog ConfigMap")
	}
	if args := embedded.Spec.InitContainers[0].Args; slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--catalog-file=") || strings.HasPrefix(a, "--schemas-file=")
	}) {
		t.Errorf("an embedded release's proxy args %v name files: it has its catalog and schemas built in", args)
	}
}
