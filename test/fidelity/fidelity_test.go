package fidelity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// kubectls are the machine's kubectl versions the test drives; missing ones
// are reported and skipped.
var kubectls = []string{"kubectl.1.27", "kubectl.1.28", "kubectl.1.29", "kubectl.1.30", "kubectl.1.31", "kubectl.1.32", "kubectl.1.33", "kubectl"}

const crd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// driveKubectl runs a realistic session of one kubectl version in a
// namespace of its own. Commands that the API server refuses (exec on a pod
// with no node) still produce audited requests; their exit codes are ignored.
func driveKubectl(kubectl, dir string) {
	ns := "fid-" + strings.NewReplacer(".", "", "kubectl", "k").Replace(filepath.Base(kubectl))
	file := filepath.Join(dir, ns+".yaml")
	Expect(os.WriteFile(file, []byte(testenv.Workload), 0o600)).To(Succeed())
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		GinkgoWriter.Printf("$ %s %s (err=%v)\n%s", filepath.Base(kubectl), strings.Join(args, " "), err, out)
		return string(out)
	}
	run("create", "namespace", ns)
	run("-n", ns, "apply", "-f", file)
	run("-n", ns, "apply", "-f", file) // unchanged: GET only
	run("-n", ns, "apply", "--server-side", "--force-conflicts", "-f", file)
	run("-n", ns, "get", "configmaps")
	run("-n", ns, "get", "configmap", "settings", "-o", "yaml")
	run("get", "pods", "-A")
	run("get", "pods", "-A", "--chunk-size=1")
	run("-n", ns, "get", "deployment", "web", "-o", "json")
	run("-n", ns, "get", "pods", "--field-selector", "metadata.name=solo")
	run("-n", ns, "get", "configmaps", "--watch", "--request-timeout=1s")
	run("-n", ns, "get", "configmap", "settings", "--watch", "--request-timeout=1s")
	run("-n", ns, "patch", "configmap", "settings", "--type", "merge", "-p", `{"data":{"b":"2"}}`)
	run("-n", ns, "patch", "configmap", "settings", "--type", "json", "-p", `[{"op":"add","path":"/data/c","value":"3"}]`)
	run("-n", ns, "label", "configmap", "settings", "tier=gold")
	run("-n", ns, "annotate", "pod", "solo", "note=x")
	run("-n", ns, "scale", "deployment", "web", "--replicas=3")
	run("-n", ns, "patch", "deployment", "web", "--subresource=status", "--type", "merge", "-p", `{"status":{"observedGeneration":1}}`)
	run("-n", ns, "get", "deployment", "web", "--subresource=scale")
	run("-n", ns, "set", "image", "deployment/web", "web=web:v2")
	run("-n", ns, "create", "token", "robot")
	run("-n", ns, "exec", "solo", "--", "ls")
	run("-n", ns, "logs", "solo")
	run("-n", ns, "port-forward", "pod/solo", "18080:80", "--pod-running-timeout=1s")
	run("-n", ns, "create", "configmap", "extra", "--from-literal=k=v")
	run("-n", ns, "replace", "-f", file)
	run("auth", "can-i", "list", "pods")
	run("api-resources")
	run("api-versions")
	run("version")
	run("get", "--raw", "/version")
	run("get", "--raw", "/api")
	run("get", "--raw", "/apis")
	run("get", "--raw", "/apis/apps")
	run("get", "--raw", "/apis/apps/v1")
	run("get", "--raw", "/api/v1")
	run("get", "--raw", "/healthz")
	run("get", "--raw", "/openapi/v3")
	run("get", "--raw", "/.well-known/openid-configuration")
	run("get", "--raw", "/api/v1/namespaces/"+ns+"/status")
	run("get", "--raw", "/api/v1/watch/namespaces/"+ns+"/configmaps?timeoutSeconds=1")
	run("get", "--raw", "/api/v1/namespaces/"+ns+"/pods?watch=true&timeoutSeconds=1")
	run("get", "--raw", "/api/v1/namespaces/"+ns+"/services/nosuch:80/proxy/some/path")
	run("get", "--raw", "/apis/example.com/v1/namespaces/"+ns+"/widgets")
	run("-n", ns, "delete", "configmap", "settings")
	run("-n", ns, "delete", "configmaps", "--all")
	run("-n", ns, "delete", "pod", "solo", "--grace-period=0", "--force")
	run("delete", "namespace", ns, "--wait=false")
}

// driveClientGo uses client-go for the calls kubectl does not make.
func driveClientGo() {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	ns := "fid-client-go"
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	cms := cs.CoreV1().ConfigMaps(ns)
	for i := range 3 {
		_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Labels: map[string]string{"set": "a"}}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{TimeoutSeconds: ptr.To[int64](1)})
	Expect(err).NotTo(HaveOccurred())
	w.Stop()
	cm, err := cms.Get(ctx, "cm-0", metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	cm.Data = map[string]string{"x": "y"}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cms.Patch(ctx, "cm-1", types.StrategicMergePatchType, []byte(`{"data":{"p":"q"}}`), metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
	Expect(cms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "set=a"})).To(Succeed())

	deploys := cs.AppsV1().Deployments(ns)
	d, err := deploys.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "api:dev"}}},
			},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	d.Status.ObservedGeneration = 1
	_, err = deploys.UpdateStatus(ctx, d, metav1.UpdateOptions{})
	Expect(err).NotTo(HaveOccurred())
	scale, err := deploys.GetScale(ctx, "api", metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	scale.Spec.Replicas = 2
	_, err = deploys.UpdateScale(ctx, "api", &autoscalingv1.Scale{ObjectMeta: scale.ObjectMeta, Spec: scale.Spec}, metav1.UpdateOptions{})
	Expect(err).NotTo(HaveOccurred())

	pods := cs.CoreV1().Pods(ns)
	_, err = pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c:dev"}}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_ = pods.EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}})
	_ = pods.Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}, metav1.CreateOptions{})
	_, _ = pods.UpdateEphemeralContainers(ctx, "p", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}}, metav1.UpdateOptions{})
	// The eviction above may already have deleted the pod.
	_ = pods.Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})

	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cs.CoreV1().Namespaces().UpdateStatus(ctx, nsObj, metav1.UpdateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, _ = cs.CoreV1().Namespaces().Finalize(ctx, nsObj, metav1.UpdateOptions{})

	_, _, err = cs.Discovery().ServerGroupsAndResources()
	Expect(err).NotTo(HaveOccurred())
	_, err = cs.Discovery().ServerVersion()
	Expect(err).NotTo(HaveOccurred())
	Expect(cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})).To(Succeed())
}

// disagreement is one audited request on which the matcher and the API
// server differ.
type disagreement struct {
	uri, field, server, ours string
}

func (d disagreement) String() string {
	return fmt.Sprintf("%s: %s: server %q, ours %q", d.uri, d.field, d.server, d.ours)
}

// compare checks one audit event against the matcher.
func compare(m *match.Matcher, ev *audit.Event) []disagreement {
	res := audit.Match(m, ev)
	info := res.Info
	var out []disagreement
	check := func(field, server, ours string) {
		if server != ours {
			out = append(out, disagreement{ev.RequestURI, field, server, ours})
		}
	}
	check("verb", ev.Verb, info.Verb)
	ref := ev.ObjectRef
	if ref == nil {
		ref = &audit.ObjectRef{}
	}
	check("resource request", fmt.Sprint(ev.ObjectRef != nil), fmt.Sprint(info.IsResourceRequest))
	check("apiGroup", ref.APIGroup, info.APIGroup)
	check("apiVersion", ref.APIVersion, info.APIVersion)
	check("resource", ref.Resource, info.Resource)
	check("subresource", ref.Subresource, info.Subresource)
	// The API server fills the objectRef of a create from the request body
	// (the new object's name, and the namespace of a namespace); the request
	// line does not carry them.
	if ev.Verb == "create" && info.Name == "" {
		return out
	}
	check("namespace", ref.Namespace, info.Namespace)
	check("name", ref.Name, info.Name)

	op := res.Operation
	if op == nil {
		return out
	}
	if info.IsResourceRequest {
		check("operation group", ref.APIGroup, op.Group)
		check("operation version", ref.APIVersion, op.Version)
		check("operation resource", ref.Resource, op.Resource)
		check("operation subresource", ref.Subresource, op.Subresource)
	}
	check("operation action", wantAction(ev.Verb, info, res.Watch), op.Action)
	return out
}

// wantAction is the x-kubernetes-action an operation must carry for a verb.
func wantAction(verb string, info match.RequestInfo, watch bool) string {
	if !info.IsResourceRequest {
		return "" // discovery and non-resource operations carry no action
	}
	switch info.Subresource {
	case "exec", "attach", "portforward", "proxy":
		return "connect"
	case "log":
		return "get"
	}
	switch verb {
	case "create":
		return "post"
	case "update":
		return "put"
	case "watch":
		if watch && strings.Contains(info.Path, "/watch/") {
			if info.Name != "" {
				return "watch"
			}
			return "watchlist"
		}
		return "list"
	}
	return verb
}

var _ = Describe("Matching fidelity", func() {
	It("agrees with the API server's audit log on every request of real clients", func() {
		dir := GinkgoT().TempDir()
		crdFile := filepath.Join(dir, "crd.yaml")
		Expect(os.WriteFile(crdFile, []byte(crd), 0o600)).To(Succeed())

		// The custom resource every kubectl then creates, lists and deletes.
		defaultKubectl, err := testenv.Kubectl("kubectl")
		Expect(err).NotTo(HaveOccurred())
		for _, args := range [][]string{{"apply", "-f", crdFile}, {"wait", "--for=condition=Established", "-f", crdFile}} {
			out, err := exec.Command(defaultKubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s", out)
		}

		var driven []string
		for _, k := range kubectls {
			path, err := testenv.Kubectl(k)
			if err != nil {
				GinkgoWriter.Printf("skipping %s: not installed\n", k)
				continue
			}
			driveKubectl(path, dir)
			driven = append(driven, k)
		}
		Expect(driven).To(ContainElements("kubectl.1.27", "kubectl.1.30", "kubectl.1.33"))
		driveClientGo()

		cat, err := catalog.Load("1.37")
		Expect(err).NotTo(HaveOccurred())
		m := match.New(cat)

		// The API server writes the audit log as requests finish; read it
		// once it stops growing.
		var lastSize int64 = -1
		Eventually(func() bool {
			info, err := os.Stat(auditLog)
			if err != nil {
				return false
			}
			grown := info.Size() != lastSize
			lastSize = info.Size()
			return !grown
		}).WithPolling(500 * time.Millisecond).Should(BeTrue())

		// Read it the way kubectl snoop does: in parallel, one event per
		// request. Events share the chunk's memory during the call, so each
		// is copied out (the whole log of this test fits in memory).
		var (
			all      []disagreement
			events   int
			matched  int
			verbs    = map[string]int{}
			unknowns = map[string]int{}
		)
		source := audit.Source{Name: auditLog, Open: func() (io.ReadCloser, error) { return os.Open(auditLog) }}
		stats, err := audit.Read(context.Background(), []audit.Source{source}, audit.Options{},
			func() func(*audit.Event) audit.Event {
				return func(ev *audit.Event) audit.Event {
					return copyEvent(ev)
				}
			},
			func(ev audit.Event) {
				events++
				verbs[ev.Verb]++
				all = append(all, compare(m, &ev)...)
				if res := audit.Match(m, &ev); res.Operation != nil {
					matched++
				} else {
					path, _, _ := strings.Cut(ev.RequestURI, "?")
					unknowns[ev.Method()+" "+path]++
				}
			})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("audit events: %d (lines %d, malformed %d), matched to an operation: %d, verbs: %v\n",
			events, stats.Lines, stats.Malformed, matched, verbs)
		GinkgoWriter.Printf("unknown to 1.37: %v\n", unknowns)
		AddReportEntry("fidelity", fmt.Sprintf("%d audited requests from %d kubectl versions and client-go, %d matched, %d disagreements",
			events, len(driven), matched, len(all)))

		Expect(stats.Malformed).To(BeZero())
		Expect(events).To(BeNumerically(">", 500))
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"} {
			Expect(verbs).To(HaveKey(verb), "no audited %s request", verb)
		}
		Expect(all).To(BeEmpty(), "disagreements:\n%s", joinDisagreements(all))
		// Only requests that 1.37's OpenAPI document does not describe may be
		// unknown: custom resources, health checks and the OpenAPI documents
		// themselves.
		for request := range unknowns {
			Expect(request).To(Or(
				ContainSubstring("/apis/example.com/"), ContainSubstring("/apis/snoop.apisnoop.dev/"),
				ContainSubstring("/healthz"), ContainSubstring("/livez"), ContainSubstring("/readyz"),
				HavePrefix("GET /openapi/"),
			), "unexpectedly unknown: %s", request)
		}
	})
})

func joinDisagreements(ds []disagreement) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteString("\n")
	}
	return b.String()
}

// copyEvent copies an event out of the memory of the chunk it was decoded
// from.
func copyEvent(ev *audit.Event) audit.Event {
	var copied audit.Event
	data, err := json.Marshal(ev)
	Expect(err).NotTo(HaveOccurred())
	Expect(json.Unmarshal(data, &copied)).To(Succeed())
	return copied
}
