//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/provenance"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

const (
	nsIPTables = "e2e-iptables"
	nsEnv      = "e2e-env"
	nsCluster  = "e2e-cluster"

	webhookConfiguration = "apisnoop-mutating-webhook-configuration"
	managerDeployment    = "apisnoop-controller-manager"

	// appUser is the testkit image's user.
	appUser = 65532
	// httpPort is what the iptables-mode pod serves, for port-forward.
	httpPort = 8080
	// scriptDone is the line the workload scripts print when every kubectl
	// call succeeded.
	scriptDone = "E2E-SCRIPT-OK"
)

// kubectlScript is the iptables-mode workload: a fixed list of kubectl calls
// with the pod's in-cluster service account, then an HTTP server to
// port-forward to. `set -e`: the done line means every call succeeded.
// --wait=false keeps `kubectl delete` from watching the deleted object, so
// the list of calls does not depend on timing.
const kubectlScript = `set -e
mkdir -p /scratch/www
echo apisnoop-e2e >/scratch/www/index.html
k() { /bin/kubectl --cache-dir=/scratch/kube-cache "$@"; }
k get configmaps
k create configmap e2e-script --from-literal=a=1
k get configmap e2e-script -o yaml
k delete configmap e2e-script --wait=false
k get pods
echo ` + scriptDone + `
exec /bin/busybox httpd -f -p 8080 -h /scratch/www
`

// scriptOperations are the operations kubectlScript's calls are, once each.
var scriptOperations = map[string]int64{
	"listCoreV1NamespacedConfigMap":   1,
	"createCoreV1NamespacedConfigMap": 1,
	"readCoreV1NamespacedConfigMap":   1,
	"deleteCoreV1NamespacedConfigMap": 1,
	"listCoreV1NamespacedPod":         1,
}

// discoveryOperation is what kubectl asks besides the calls it is told to
// make: API discovery (/api, /apis, /apis/GROUP[/VERSION]) and /version.
// These are the only extra operations allowed.
var discoveryOperation = regexp.MustCompile(`^(getAPIVersions|getCoreAPIVersions|getCoreV1APIResources|getCodeVersion|get[A-Za-z0-9]*APIGroup|get[A-Za-z0-9]*APIResources)$`)

// maxExtraRequests bounds the requests beyond the script's five: kubectl's
// discovery. Observed on 1.37.2: getAPIVersions (/apis) and
// getCoreAPIVersions (/api) once each, as the first of the five kubectl
// processes fills the shared cache directory (aggregated discovery) and the
// others read it; no OpenAPI fetch (generators such as `create configmap`
// do not validate), nothing unknown. The bound allows both discovery
// requests for every one of the five processes, should the cache not be
// shared.
const maxExtraRequests = 10

var _ = Describe("kube-apisnoop on a real node", Ordered, func() {
	It("installs with its Helm chart: the manager Ready, the webhook's caBundle filled", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
		}}}
		Expect(admin.Create(ctx, ns)).To(Succeed())
		out, err := run(5*time.Minute, helm, "install", releaseName, chartDir(),
			"--namespace", releaseNamespace,
			"--set", "image.repository="+imageRepo+"/apisnoop",
			// --set-string: a tag such as a short commit hash of digits
			// only must stay a string.
			"--set-string", "image.tag="+imageTag,
			"--set", "image.pullPolicy=Never",
			"--set", "sidecar.image.repository="+imageRepo+"/apisnoop",
			"--set-string", "sidecar.image.tag="+imageTag,
			"--wait", "--timeout", "3m")
		Expect(err).NotTo(HaveOccurred(), out)
		GinkgoWriter.Println(out)

		Eventually(func(g Gomega) {
			d := &appsv1.Deployment{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: managerDeployment}, d)).To(Succeed())
			g.Expect(d.Status.ReadyReplicas).To(BeNumerically(">=", 1))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Name: webhookConfiguration}, mwc)).To(Succeed())
			g.Expect(mwc.Webhooks).NotTo(BeEmpty())
			for _, w := range mwc.Webhooks {
				g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty(), w.Name)
			}
		}).Should(Succeed())
	})

	Context("iptables mode", Ordered, func() {
		var (
			s   *snoopv1alpha1.SnoopSession
			pod *corev1.Pod
		)

		It("records a Deployment's kubectl calls, and exec, logs -f and port-forward work through the injected pod", func() {
			ns := namespace(nsIPTables, nil)
			// Bodies recorded: field coverage, and the pod's writes for
			// their history.
			s = createSession(ns, "demo", snoopv1alpha1.InterceptionIPTables, "1.37", snoopv1alpha1.Recording{RequestBodies: true})
			serviceAccount(ns, "demo", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "create", "delete"}},
				rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}})
			tmpl := workload(ns, "demo", kubectlScript)
			tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}}
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](1),
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}},
					Template: corev1.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
				},
			}
			d.Spec.Template.Name, d.Spec.Template.Namespace = "", ""
			Expect(admin.Create(ctx, d)).To(Succeed())

			By("the first request shows in the session's status")
			Eventually(func() int64 { return getSession(s).Status.Requests }, 3*time.Minute).Should(BeNumerically(">", 0))
			firstSeen := time.Now()
			pod = onlyPod(ns, "app=demo")
			started := containerStarted(pod)
			fmt.Fprintf(GinkgoWriter, "TIMING pod %s: startTime %s, app container started %s, first request in status %s: %.1fs after pod start, %.1fs after the app container started\n",
				pod.Name, pod.Status.StartTime.Format(time.RFC3339), started.Format(time.RFC3339), firstSeen.Format(time.RFC3339Nano),
				firstSeen.Sub(pod.Status.StartTime.Time).Seconds(), firstSeen.Sub(started).Seconds())

			By("the pod came up injected: redirect ran, sidecar ready")
			Eventually(func(g Gomega) {
				pod = onlyPod(ns, "app=demo")
				g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
				g.Expect(readyCondition(pod)).To(BeTrue())
			}).Should(Succeed())
			Expect(initContainerNames(pod)).To(ConsistOf(targets.ProxyContainerName, webhook.IPTablesContainerName))
			Expect(pod.Annotations).To(HaveKeyWithValue(webhook.AnnotationSession, ns+"/demo"))
			redirect := initStatus(pod, webhook.IPTablesContainerName)
			Expect(redirect.State.Terminated).NotTo(BeNil(), "the redirect init container ran")
			Expect(redirect.State.Terminated.ExitCode).To(BeZero())
			sidecar := initStatus(pod, targets.ProxyContainerName)
			Expect(sidecar.Ready).To(BeTrue(), "the sidecar is ready")
			Expect(sidecar.RestartCount).To(BeZero())
			Expect(appStatus(pod).RestartCount).To(BeZero(), "the script ran once")
			GinkgoWriter.Println(kube("get", "pod", "-n", ns, pod.Name, "-o", "yaml"))

			By("every call of the script succeeded")
			Eventually(appLog(ns, pod.Name)).Should(ContainSubstring(scriptDone))
			fmt.Fprintf(GinkgoWriter, "script log:\n%s\n", kube("logs", "-n", ns, pod.Name, "-c", "app"))

			By("kubectl exec, with output and exit codes")
			Expect(kube("exec", "-n", ns, pod.Name, "-c", "app", "--", "/bin/busybox", "echo", "exec-ok")).To(ContainSubstring("exec-ok"))
			_, err := run(time.Minute, kubectl, "exec", "-n", ns, pod.Name, "-c", "app", "--", "/bin/busybox", "sh", "-c", "exit 3")
			var exitErr *exec.ExitError
			Expect(err).To(BeAssignableToTypeOf(exitErr))
			Expect(err.(*exec.ExitError).ExitCode()).To(Equal(3))

			By("kubectl logs -f streams, bounded")
			Expect(followLogs(ns, pod.Name, "app", scriptDone, 30*time.Second)).To(Succeed())

			By("kubectl port-forward to the pod's HTTP server")
			Expect(portForward(ns, pod.Name, httpPort, 30*time.Second)).To(Equal("apisnoop-e2e\n"))
		})

		It("shows exactly the script's operations, within a bound, in the status and the results ConfigMap", func() {
			// The sidecar ships its deltas on its own schedule: wait until
			// the status stops moving.
			var requests int64
			Eventually(func(g Gomega) {
				requests = getSession(s).Status.Requests
				g.Consistently(func() int64 { return getSession(s).Status.Requests }, 3*time.Second, 500*time.Millisecond).Should(Equal(requests))
			}, 3*time.Minute).Should(Succeed())

			got := getSession(s)
			GinkgoWriter.Println(kube("describe", "snoopsession", "-n", s.Namespace, s.Name))
			Expect(got.Status.ResultsConfigMaps).NotTo(BeEmpty())
			Expect(got.Status.FailedRequests).To(BeZero())
			Expect(got.Status.Pods.Injected).To(BeNumerically("==", 1))
			st, names, err := results.Load(ctx, admin, got)
			Expect(err).NotTo(HaveOccurred())
			fmt.Fprintf(GinkgoWriter, "results ConfigMaps %v: %d requests, %d unknown, operations %v, unknown %v\n",
				names, st.Delta.Requests, st.Delta.UnknownRequests, hits(st), unknownShapes(st))
			Expect(st.Delta.Requests).To(Equal(requests), "the ConfigMap holds what the status counts")

			ops := hits(st)
			extra := map[string]int64{}
			for id, n := range ops {
				if want, ok := scriptOperations[id]; ok {
					Expect(n).To(Equal(want), "the script calls %s once", id)
				} else {
					extra[id] = n
				}
			}
			for id := range scriptOperations {
				Expect(ops).To(HaveKey(id))
			}
			for id := range extra {
				Expect(id).To(MatchRegexp(discoveryOperation.String()), "only discovery besides the script's calls")
			}
			Expect(st.Delta.UnknownRequests).To(BeZero(), "unknown: %v", unknownShapes(st))
			Expect(requests-int64(len(scriptOperations))).To(BeNumerically("<=", maxExtraRequests),
				"requests beyond the script's: discovery %v and unknown %v", extra, unknownShapes(st))
		})

		It("serves the session's live page and results through the API server's service proxy", func() {
			got := getSession(s)
			Expect(got.Status.ResultsPage).To(Equal("/sessions/" + s.Namespace + "/" + s.Name + "/page"))
			proxied := "/api/v1/namespaces/" + releaseNamespace + "/services/https:apisnoop-webhook-service:443/proxy"

			By("the page, for anyone who may use the service proxy: no results in it")
			page := kube("get", "--raw", proxied+got.Status.ResultsPage)
			Expect(page).To(ContainSubstring("Live API coverage of SnoopSession " + s.Namespace + "/" + s.Name))

			By("the results beside it (relative to the page), with a reader's token in X-Apisnoop-Token")
			serviceAccount(s.Namespace, "e2e-reader", rbacv1.PolicyRule{
				APIGroups: []string{snoopv1alpha1.GroupVersion.Group}, Resources: []string{"snoopsessions"}, Verbs: []string{"get"},
			})
			token := strings.TrimSpace(kube("create", "token", "e2e-reader", "-n", s.Namespace))
			results := strings.TrimSuffix(got.Status.ResultsPage, "page") + "results"
			api := kubernetes.NewForConfigOrDie(restCfg).CoreV1().RESTClient()
			body, err := api.Get().AbsPath(proxied+results).Param("format", "json").SetHeader("X-Apisnoop-Token", token).DoRaw(ctx)
			Expect(err).NotTo(HaveOccurred(), "%s", body)
			var report coverage.Report
			Expect(json.Unmarshal(body, &report)).To(Succeed())
			Expect(report.Summary.Requests).To(Equal(getSession(s).Status.Requests))

			By("and nothing without a token: the service proxy does not pass the admin's credentials on")
			body, err = api.Get().AbsPath(proxied+results).Param("format", "json").DoRaw(ctx)
			Expect(err).To(HaveOccurred(), "%s", body)
		})

		It("keeps the pod's writes: the history of the script's ConfigMap, from the results and from the results API", func() {
			got := getSession(s)
			pod := "system:serviceaccount:" + s.Namespace + ":demo"
			target, err := provenance.ParseTarget("configmaps/e2e-script", s.Namespace)
			Expect(err).NotTo(HaveOccurred())
			checkHistory := func(g Gomega, src audit.Source) {
				h, err := provenance.Read(ctx, []audit.Source{src}, target, provenance.Options{})
				g.Expect(err).NotTo(HaveOccurred())
				var writes []string
				for _, v := range h.Versions {
					writes = append(writes, v.Write()+" by "+v.User)
					g.Expect(v.UserAgent).To(HavePrefix("kubectl/"))
				}
				g.Expect(writes).To(Equal([]string{"create by " + pod, "delete by " + pod}))
			}

			By("from the results ConfigMaps, as kubectl snoop history --session reads them")
			st, _, err := results.Load(ctx, admin, got)
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Delta.Writes).NotTo(BeEmpty())
			src, err := provenance.WritesSource("SnoopSession "+s.Namespace+"/"+s.Name, st.Delta.Writes)
			Expect(err).NotTo(HaveOccurred())
			checkHistory(Default, src)

			By("from the results API, through the service proxy, for a token that may get snoopsessions/history")
			proxied := "/api/v1/namespaces/" + releaseNamespace + "/services/https:apisnoop-webhook-service:443/proxy"
			writes := strings.TrimSuffix(got.Status.ResultsPage, "page") + "writes"
			api := kubernetes.NewForConfigOrDie(restCfg).CoreV1().RESTClient()
			reader := strings.TrimSpace(kube("create", "token", "e2e-reader", "-n", s.Namespace))
			body, err := api.Get().AbsPath(proxied+writes).SetHeader("X-Apisnoop-Token", reader).DoRaw(ctx)
			Expect(err).To(HaveOccurred(), "a reader of the coverage may not read the bodies: %s", body)
			serviceAccount(s.Namespace, "e2e-historian", rbacv1.PolicyRule{
				APIGroups: []string{snoopv1alpha1.GroupVersion.Group}, Resources: []string{"snoopsessions/history"}, Verbs: []string{"get"},
			})
			historian := strings.TrimSpace(kube("create", "token", "e2e-historian", "-n", s.Namespace))
			Eventually(func(g Gomega) {
				body, err := api.Get().AbsPath(proxied+writes).SetHeader("X-Apisnoop-Token", historian).DoRaw(ctx)
				g.Expect(err).NotTo(HaveOccurred(), "%s", body)
				checkHistory(g, audit.Source{Name: "results API", Open: func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(body)), nil
				}})
			}, time.Minute).Should(Succeed())
		})
	})

	Context("env mode under Pod Security baseline", func() {
		It("injects without the redirect init container, is admitted and records the call", func() {
			ns := namespace(nsEnv, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
			s := createSession(ns, "demo", snoopv1alpha1.InterceptionEnv, "1.37")
			serviceAccount(ns, "demo", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list"}})
			pod := workload(ns, "demo", oneCall("get configmaps"))
			Expect(admin.Create(ctx, pod)).To(Succeed(), "admitted under baseline")

			Eventually(func(g Gomega) {
				g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
				g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
				g.Expect(readyCondition(pod)).To(BeTrue())
			}).Should(Succeed())
			Expect(initContainerNames(pod)).To(ConsistOf(targets.ProxyContainerName))
			Expect(pod.Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"}))
			Eventually(appLog(ns, pod.Name)).Should(ContainSubstring(scriptDone))

			Eventually(func(g Gomega) {
				got := getSession(s)
				st, _, err := results.Load(ctx, admin, got)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(hits(st)).To(HaveKeyWithValue("listCoreV1NamespacedConfigMap", int64(1)))
				g.Expect(got.Status.Requests).To(Equal(st.Delta.Requests))
			}, 3*time.Minute).Should(Succeed())
			GinkgoWriter.Println(kube("describe", "snoopsession", "-n", ns, "demo"))
		})
	})

	Context("kubernetesRelease cluster with a CRD", func() {
		It("counts a custom resource's list as a hit, not unknown", func() {
			kube("apply", "--server-side", "-f", testenv.WidgetsCRD())
			kube("wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.example.com")
			// The API server publishes a CRD's OpenAPI a moment after it is
			// Established; a cluster catalog read before that lacks it until
			// the operator reads the cluster again (its cache's TTL).
			Eventually(func() string {
				out, _ := run(time.Minute, kubectl, "get", "--raw", "/openapi/v3")
				return out
			}).Should(ContainSubstring(`"apis/example.com/v1"`))
			ns := namespace(nsCluster, nil)
			s := createSession(ns, "demo", snoopv1alpha1.InterceptionEnv, snoopv1alpha1.ClusterRelease)
			Eventually(func() error {
				return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.CatalogConfigMap}, &corev1.ConfigMap{})
			}).Should(Succeed(), "the cluster's catalog is published before the pod starts")
			serviceAccount(ns, "demo", rbacv1.PolicyRule{APIGroups: []string{"example.com"}, Resources: []string{"widgets"}, Verbs: []string{"list"}})
			pod := workload(ns, "demo", oneCall("get widgets.example.com"))
			Expect(admin.Create(ctx, pod)).To(Succeed())

			Eventually(appLog(ns, pod.Name)).Should(ContainSubstring(scriptDone))
			Eventually(func(g Gomega) {
				got := getSession(s)
				st, _, err := results.Load(ctx, admin, got)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(hits(st)).To(HaveKeyWithValue(MatchRegexp(`^list.*Widget$`), int64(1)))
				g.Expect(st.Delta.UnknownRequests).To(BeZero(), "unknown: %v", unknownShapes(st))
				g.Expect(got.Status.UnknownRequests).To(BeZero())
			}, 3*time.Minute).Should(Succeed())
			GinkgoWriter.Println(kube("describe", "snoopsession", "-n", ns, "demo"))
		})

		It("follows a custom resource installed after the pod started: the running sidecar matches its requests once the catalog copy changed, without a restart", func() {
			ns := namespace(nsCluster+"-follow", nil)
			s := createSession(ns, "demo", snoopv1alpha1.InterceptionEnv, snoopv1alpha1.ClusterRelease)
			Eventually(func() error {
				return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.CatalogConfigMap}, &corev1.ConfigMap{})
			}).Should(Succeed())
			serviceAccount(ns, "demo", rbacv1.PolicyRule{APIGroups: []string{"toys.example.org"}, Resources: []string{"gizmos"}, Verbs: []string{"list"}})
			// Lists gizmos every 3 s for at most 5 minutes; before the CRD
			// exists kubectl finds no such resource and sends only discovery.
			pod := workload(ns, "demo", fmt.Sprintf(`echo %s
i=0
while [ $i -lt 100 ]; do
  /bin/kubectl --cache-dir=/scratch/kube-cache get gizmos.toys.example.org >/dev/null 2>&1 || true
  i=$((i+1))
  /bin/busybox sleep 3
done
exec /bin/busybox sleep 3600
`, scriptDone))
			Expect(admin.Create(ctx, pod)).To(Succeed())
			Eventually(appLog(ns, pod.Name)).Should(ContainSubstring(scriptDone))
			restarts := func() int32 {
				var p corev1.Pod
				Expect(admin.Get(ctx, client.ObjectKeyFromObject(pod), &p)).To(Succeed())
				var n int32
				for _, c := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
					n += c.RestartCount
				}
				return n
			}
			before := restarts()

			By("installing the custom resource while the pod runs")
			crd := testenv.NamespacedCRD("toys.example.org", "gizmos", "Gizmo", nil)
			installed := time.Now()
			crds := envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}}
			_, err := envtest.InstallCRDs(restCfg, crds)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { Expect(envtest.UninstallCRDs(restCfg, crds)).To(Succeed()) })

			By("the session counting the running pod's gizmo lists as hits of the new operation")
			var st *results.State
			Eventually(func(g Gomega) {
				var err error
				st, _, err = results.Load(ctx, admin, getSession(s))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(hits(st)).To(HaveKeyWithValue(MatchRegexp(`^list.*Gizmo$`), BeNumerically(">=", 1)))
			}, 4*time.Minute, 2*time.Second).Should(Succeed())
			GinkgoWriter.Printf("a running pod's gizmo lists matched %s after the CRD was applied; unknown before that: %v\n",
				time.Since(installed).Round(time.Second), unknownShapes(st))
			Expect(restarts()).To(Equal(before), "the pod's containers restarted")
		})
	})

	It("leaves nothing of the operator behind after the sessions and the chart are deleted", func() {
		By("deleting the sessions: the operator removes its finalizers")
		for _, ns := range testNamespaces {
			Expect(admin.DeleteAllOf(ctx, &snoopv1alpha1.SnoopSession{}, client.InNamespace(ns))).To(Succeed())
		}
		Eventually(func(g Gomega) {
			list := &snoopv1alpha1.SnoopSessionList{}
			g.Expect(admin.List(ctx, list)).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
		}).Should(Succeed())

		By("uninstalling the chart")
		out, err := run(5*time.Minute, helm, "uninstall", releaseName, "--namespace", releaseNamespace, "--wait", "--timeout", "3m")
		Expect(err).NotTo(HaveOccurred(), out)

		By("no webhook, cluster role or binding of the chart is left")
		Expect(apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Name: webhookConfiguration}, &admissionregistrationv1.MutatingWebhookConfiguration{}))).To(BeTrue())
		Expect(namesWithPrefix(&rbacv1.ClusterRoleList{}, "apisnoop")).To(BeEmpty())
		Expect(namesWithPrefix(&rbacv1.ClusterRoleBindingList{}, "apisnoop")).To(BeEmpty())

		By("nothing runs or is kept in the release namespace")
		Eventually(func(g Gomega) {
			g.Expect(names(&corev1.PodList{}, releaseNamespace)).To(BeEmpty())
		}).Should(Succeed())
		Expect(names(&appsv1.DeploymentList{}, releaseNamespace)).To(BeEmpty())
		Expect(names(&corev1.ServiceList{}, releaseNamespace)).To(BeEmpty())
		Expect(names(&corev1.ServiceAccountList{}, releaseNamespace)).To(ConsistOf("default"))
		// Helm deletes what it installed; what the operator made at run time
		// in its own namespace (its CA, the webhook's and the proxies'
		// serving Secrets, the leader Lease) names the operator's
		// ServiceAccount as owner, so the garbage collector deletes it once
		// Helm has deleted that.
		Eventually(func(g Gomega) {
			left := map[string][]string{
				"secrets":    names(&corev1.SecretList{}, releaseNamespace),
				"configmaps": names(&corev1.ConfigMapList{}, releaseNamespace),
				"leases":     names(&coordinationv1.LeaseList{}, releaseNamespace),
			}
			fmt.Fprintf(GinkgoWriter, "left in %s after uninstall: %v\n", releaseNamespace, left)
			g.Expect(left["secrets"]).To(BeEmpty())
			g.Expect(left["leases"]).To(BeEmpty())
			g.Expect(left["configmaps"]).To(ConsistOf("kube-root-ca.crt"))
		}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("the test namespaces keep nothing of the operator: no trust objects, catalog or results")
		for _, ns := range testNamespaces {
			secrets, configMaps := names(&corev1.SecretList{}, ns), names(&corev1.ConfigMapList{}, ns)
			fmt.Fprintf(GinkgoWriter, "left in %s: secrets %v, configmaps %v\n", ns, secrets, configMaps)
			Expect(secrets).To(BeEmpty())
			Expect(configMaps).To(ConsistOf("kube-root-ca.crt"))
		}

		By("a new matching pod is no longer injected")
		p := workload(nsIPTables, "after", "exec /bin/busybox sleep 3600")
		p.Labels["app"] = "demo"
		Expect(admin.Create(ctx, p)).To(Succeed())
		Expect(p.Spec.InitContainers).To(BeEmpty())
		Expect(p.Annotations).NotTo(HaveKey(webhook.AnnotationSession))

		By("removing the test namespaces, the release namespace and the CRDs (Helm keeps crds/)")
		for _, ns := range append(slices.Clone(testNamespaces), releaseNamespace) {
			Expect(client.IgnoreNotFound(admin.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))).To(Succeed())
		}
		kube("delete", "crd", "snoopsessions.snoop.apisnoop.dev", "widgets.example.com", "--ignore-not-found")
		Eventually(func(g Gomega) {
			for _, ns := range append(slices.Clone(testNamespaces), releaseNamespace) {
				err := admin.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s still there", ns)
			}
		}, 3*time.Minute).Should(Succeed())
	})
})

// namespace makes a test namespace.
func namespace(name string, labels map[string]string) string {
	GinkgoHelper()
	Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})).To(Succeed())
	testNamespaces = append(testNamespaces, name)
	return name
}

// createSession records the pods labelled app=demo in ns, and waits until
// the operator has published what injected pods mount.
func createSession(ns, name string, mode snoopv1alpha1.InterceptionMode, release string, recording ...snoopv1alpha1.Recording) *snoopv1alpha1.SnoopSession {
	GinkgoHelper()
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: snoopv1alpha1.SnoopSessionSpec{
			KubernetesRelease: release,
			Interception:      mode,
			Targets:           snoopv1alpha1.Targets{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}},
		},
	}
	if len(recording) > 0 {
		s.Spec.Recording = recording[0]
	}
	Expect(admin.Create(ctx, s)).To(Succeed())
	Eventually(func(g Gomega) {
		got := getSession(s)
		g.Expect(got.Status.Release).NotTo(BeEmpty())
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, snoopv1alpha1.ConditionReady)).NotTo(BeNil())
		g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.ProxyCertSecret}, &corev1.Secret{})).To(Succeed())
		g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.TrustBundleConfigMap}, &corev1.ConfigMap{})).To(Succeed())
	}).Should(Succeed())
	// The webhook fails open: a pod created before the API server reaches
	// it (kube-proxy still rejects the webhook Service's new address for a
	// few seconds after the manager is Ready) or before the webhook's cache
	// holds the session is created unrecorded. A server-side dry run shows
	// when a matching pod would be injected, and creates nothing.
	Eventually(func(g Gomega) {
		probe := workload(ns, "probe", "true")
		probe.Spec.ServiceAccountName = ""
		g.Expect(admin.Create(ctx, probe, client.DryRunAll)).To(Succeed())
		g.Expect(initContainerNames(probe)).To(ContainElement(targets.ProxyContainerName))
	}).Should(Succeed())
	return getSession(s)
}

func getSession(s *snoopv1alpha1.SnoopSession) *snoopv1alpha1.SnoopSession {
	GinkgoHelper()
	got := &snoopv1alpha1.SnoopSession{}
	Expect(admin.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
	return got
}

// serviceAccount makes a service account with a Role of rules.
func serviceAccount(ns, name string, rules ...rbacv1.PolicyRule) {
	GinkgoHelper()
	Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
	Expect(admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules})).To(Succeed())
	Expect(admin.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	})).To(Succeed())
}

// oneCall is a workload script of one kubectl call, then sleep.
func oneCall(args string) string {
	return fmt.Sprintf("set -e\n/bin/kubectl --cache-dir=/scratch/kube-cache %s\necho %s\nexec /bin/busybox sleep 3600\n", args, scriptDone)
}

// workload is a pod labelled app=demo of the testkit image running script
// as the testkit user, under the Pod Security "restricted" rules, with its
// service account "demo" (when it exists) and a writable /scratch (the image
// has no /tmp) for kubectl's cache.
func workload(ns, name, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "demo"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "demo",
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: ptr.To[int64](appUser), RunAsGroup: ptr.To[int64](appUser), RunAsNonRoot: ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           image("apisnoop-testkit"),
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/busybox", "sh", "-c", script},
				Env:             []corev1.EnvVar{{Name: "HOME", Value: "/scratch"}, {Name: "KUBECACHEDIR", Value: "/scratch/kube-cache"}},
				VolumeMounts:    []corev1.VolumeMount{{Name: "work", MountPath: "/scratch"}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// appLog polls the app container's log of a pod (empty while it cannot be
// read).
func appLog(ns, pod string) func() string {
	return func() string {
		out, _ := run(time.Minute, kubectl, "logs", "-n", ns, pod, "-c", "app")
		return out
	}
}

// onlyPod is the one pod of selector in ns.
func onlyPod(ns, selector string) *corev1.Pod {
	GinkgoHelper()
	var pod *corev1.Pod
	Eventually(func(g Gomega) {
		list := &corev1.PodList{}
		sel, err := metav1.ParseToLabelSelector(selector)
		g.Expect(err).NotTo(HaveOccurred())
		s, err := metav1.LabelSelectorAsSelector(sel)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(admin.List(ctx, list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: s})).To(Succeed())
		g.Expect(list.Items).To(HaveLen(1))
		pod = &list.Items[0]
		g.Expect(pod.Status.StartTime).NotTo(BeNil())
	}).Should(Succeed())
	return pod
}

func readyCondition(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func initContainerNames(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	return names
}

func initStatus(pod *corev1.Pod, name string) corev1.ContainerStatus {
	GinkgoHelper()
	for _, st := range pod.Status.InitContainerStatuses {
		if st.Name == name {
			return st
		}
	}
	Fail("no status of init container " + name)
	return corev1.ContainerStatus{}
}

func appStatus(pod *corev1.Pod) corev1.ContainerStatus {
	GinkgoHelper()
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == "app" {
			return st
		}
	}
	Fail("no status of container app")
	return corev1.ContainerStatus{}
}

// containerStarted is when the app container started, or the pod's start.
func containerStarted(pod *corev1.Pod) time.Time {
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == "app" && st.State.Running != nil {
			return st.State.Running.StartedAt.Time
		}
	}
	return pod.Status.StartTime.Time
}

// hits are the operations a session's results hit, with their requests.
func hits(st *results.State) map[string]int64 {
	out := map[string]int64{}
	for id, c := range st.Delta.Operations {
		if c.Requests > 0 {
			out[id] = c.Requests
		}
	}
	return out
}

func unknownShapes(st *results.State) map[string]int64 {
	out := map[string]int64{}
	for shape, c := range st.Delta.Unknown {
		out[shape] = c.Requests
	}
	return out
}

// followLogs runs `kubectl logs -f` until it prints want, at most timeout.
func followLogs(ns, pod, container, want string, timeout time.Duration) error {
	c, stop := context.WithTimeout(ctx, timeout)
	defer stop()
	cmd := exec.CommandContext(c, kubectl, "logs", "-f", "-n", ns, pod, "-c", container)
	cmd.Env = toolEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { stop(); _ = cmd.Wait() }()
	scanner := bufio.NewScanner(out)
	for scanner.Scan() {
		if strings.Contains(scanner.Text(), want) {
			return nil
		}
	}
	return fmt.Errorf("kubectl logs -f ended without %q: %v", want, c.Err())
}

// portForward forwards a free loopback port to the pod's port and GETs /
// through it.
func portForward(ns, pod string, port int, timeout time.Duration) (string, error) {
	local, err := testenv.FreePort()
	if err != nil {
		return "", err
	}
	c, stop := context.WithTimeout(ctx, timeout)
	defer stop()
	cmd := exec.CommandContext(c, kubectl, "port-forward", "-n", ns, "pod/"+pod, "--address", "127.0.0.1",
		strconv.Itoa(local)+":"+strconv.Itoa(port))
	cmd.Env = toolEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() { stop(); _ = cmd.Wait() }()
	scanner := bufio.NewScanner(out)
	for scanner.Scan() {
		if strings.HasPrefix(scanner.Text(), "Forwarding from") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	req, err := http.NewRequestWithContext(c, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", local), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET through port-forward: %s", resp.Status)
	}
	return string(body), err
}

// names lists the names of objects of list's kind in ns ("" for every
// namespace or a cluster-scoped kind).
func names(list client.ObjectList, ns string) []string {
	GinkgoHelper()
	var opts []client.ListOption
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	Expect(admin.List(ctx, list, opts...)).To(Succeed())
	items, err := meta.ExtractList(list)
	Expect(err).NotTo(HaveOccurred())
	out := []string{}
	for _, item := range items {
		o, err := meta.Accessor(item)
		Expect(err).NotTo(HaveOccurred())
		out = append(out, o.GetName())
	}
	sort.Strings(out)
	return out
}

func namesWithPrefix(list client.ObjectList, prefix string) []string {
	GinkgoHelper()
	out := []string{}
	for _, n := range names(list, "") {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
