package manager_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// recordedPod is an injected pod whose sidecar runs as a local process from
// the pod spec, and a kubeconfig for the pod's service account through it.
type recordedPod struct {
	pod        *corev1.Pod
	kubeconfig string
	results    string // the sidecar's /results
}

// sidecarBinary builds snoop-proxy once per suite, into a directory the
// suite removes at its end.
var sidecarBinary = func() func() string {
	var path string
	return func() string {
		GinkgoHelper()
		if path == "" {
			dir, err := os.MkdirTemp("", "snoop-proxy")
			Expect(err).NotTo(HaveOccurred())
			suiteCleanups = append(suiteCleanups, func() { _ = os.RemoveAll(dir) })
			path = filepath.Join(dir, "snoop-proxy")
			build := exec.Command("go", "build", "-o", path, "./cmd/snoop-proxy")
			build.Dir = testenv.RepoRoot()
			out, err := build.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
		}
		return path
	}
}()

// startRecordedPod runs pod's injected sidecar as the kubelet would (its
// args, env, mounted Secret, ConfigMaps and tokens), shipping to the
// manager's collector every half second, and gives the pod's service
// account every right in its namespace.
func startRecordedPod(pod *corev1.Pod) *recordedPod {
	GinkgoHelper()
	sc, err := testoperator.StartSidecar(ctx, admin, restCfg, pod, sidecarBinary(), GinkgoT().TempDir(), "cluster-admin", 500*time.Millisecond, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sc.Stop)
	return &recordedPod{pod: pod, kubeconfig: sc.Kubeconfig, results: sc.ResultsURL}
}

// podToken is a token of the pod's service account bound to the pod, for
// audience (empty: the API server's).
func podToken(pod *corev1.Pod, audience string) string {
	GinkgoHelper()
	clientset, err := kubernetes.NewForConfig(restCfg)
	Expect(err).NotTo(HaveOccurred())
	_ = admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: pod.Namespace}})
	spec := authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}
	if audience != "" {
		spec.Audiences = []string{audience}
	}
	tr, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, "default", &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

// kubectl runs the real kubectl through the pod's sidecar.
func (p *recordedPod) kubectl(args ...string) {
	GinkgoHelper()
	path, err := testenv.Kubectl("kubectl")
	Expect(err).NotTo(HaveOccurred())
	out, err := exec.Command(path, append([]string{"--kubeconfig", p.kubeconfig}, args...)...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
}

// made is how many requests the sidecar proxied: the ground truth the
// collector's counts are held to (every request, kubectl's discovery
// included, goes through it).
func (p *recordedPod) made() int64 {
	GinkgoHelper()
	return p.sidecarResults().Summary.Requests
}

// sidecarResults is what the sidecar itself recorded.
func (p *recordedPod) sidecarResults() *coverage.Report {
	GinkgoHelper()
	resp, err := http.Get(p.results)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	rep := &coverage.Report{}
	Expect(json.NewDecoder(resp.Body).Decode(rep)).To(Succeed())
	return rep
}

func hitsByOperation(ops []coverage.OperationReport) map[string]int64 {
	hits := map[string]int64{}
	for _, op := range ops {
		if op.Hits > 0 {
			hits[op.ID] = op.Hits
		}
	}
	return hits
}

// persisted are the results in the session's ConfigMaps.
func persisted(s *snoopv1alpha1.SnoopSession) (*results.State, error) {
	st, _, err := results.Load(ctx, admin, s)
	return st, err
}

func getSession(s *snoopv1alpha1.SnoopSession) *snoopv1alpha1.SnoopSession {
	GinkgoHelper()
	got := &snoopv1alpha1.SnoopSession{}
	Expect(admin.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
	return got
}

// collectorClient posts to the collector, trusting the operator's CA.
func collectorClient() *http.Client {
	GinkgoHelper()
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(caPEM())).To(BeTrue())
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

func postBatch(b intake.Batch, token string) (int, string) {
	GinkgoHelper()
	req, err := intake.NewRequest(context.Background(), fmt.Sprintf("https://127.0.0.1:%d%s", operator.WebhookPort, intake.Path), b, token)
	Expect(err).NotTo(HaveOccurred())
	resp, err := collectorClient().Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

var _ = Describe("Sessions end to end", Ordered, func() {
	var (
		ns      string
		s       *snoopv1alpha1.SnoopSession
		p       *recordedPod
		made    int64
		outside *corev1.Pod
		// second is injected too but runs no sidecar: the test ships its
		// batches itself.
		second *corev1.Pod
	)

	BeforeAll(func() {
		ns = targetNamespace(nil)
		s = session(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.Interception = snoopv1alpha1.InterceptionEnv })
		pod := injectedPod(ns)
		Expect(pod.Spec.InitContainers[0].Args).To(ContainElement(HavePrefix("--collector=https://127.0.0.1:")))
		p = startRecordedPod(pod)
		outside = createPod(appPod(ns, map[string]string{"app": "other"}))
		second = injectedPod(ns)
	})

	It("shows a pod's requests, through its sidecar, in the session's status and ConfigMap, exactly", func() {
		p.kubectl("get", "configmaps")
		p.kubectl("create", "configmap", "settings", "--from-literal=a=1")
		p.kubectl("get", "configmap", "settings", "-o", "yaml")
		p.kubectl("delete", "configmap", "settings")
		p.kubectl("get", "pods")
		made = p.made()
		Expect(made).To(BeNumerically(">=", 5))

		Eventually(func() int64 { return getSession(s).Status.Requests }, 20*time.Second).Should(BeNumerically("==", made))
		status := getSession(s).Status
		Expect(status.Coverage.Stable.Hit).To(BeNumerically(">", 3))
		Expect(status.Coverage.Stable.Operations).To(BeNumerically(">", 700))
		Expect(status.LastUpdateTime).NotTo(BeNil())
		Expect(status.ResultsConfigMaps).NotTo(BeEmpty())
		Expect(status.ResultsPage).To(Equal(collector.ResultsPagePath(ns, s.Name)))
		page, err := collectorClient().Get(fmt.Sprintf("https://127.0.0.1:%d%s", operator.WebhookPort, status.ResultsPage))
		Expect(err).NotTo(HaveOccurred())
		page.Body.Close()
		Expect(page.StatusCode).To(Equal(http.StatusOK), "the manager serves the page the status names")
		Expect(page.Header.Get("Content-Type")).To(HavePrefix("text/html"))
		Expect(status.Clients).To(BeNumerically(">=", 1))

		By("the ConfigMap's per-operation hits equal what the sidecar proxied")
		st, err := persisted(s)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Delta.Requests).To(BeNumerically("==", made))
		fromConfigMap := map[string]int64{}
		for id, c := range st.Delta.Operations {
			fromConfigMap[id] = c.Requests
		}
		Expect(fromConfigMap).To(Equal(hitsByOperation(p.sidecarResults().Operations)))
		Expect(fromConfigMap).To(HaveKey("createCoreV1NamespacedConfigMap"))
	})

	It("refuses, counts and never merges batches without a good token of a pod the session records, and a replay counts once", func() {
		before := getSession(s).Status.Requests
		counted := func(result string) float64 { return testutil.ToFloat64(collector.BatchesTotal.WithLabelValues(result)) }
		unauthenticated, forbidden, duplicates := counted(collector.ResultUnauthenticated), counted(collector.ResultForbidden), counted(collector.ResultDuplicate)
		batch := func(seq uint64) intake.Batch {
			d := &coverage.Delta{}
			d.Add(coverage.Hit{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200})
			return intake.Batch{Source: string(second.UID), Seq: seq, Release: "1.37", Delta: d}
		}
		code, _ := postBatch(batch(1000), "")
		Expect(code).To(Equal(http.StatusUnauthorized), "no token")
		code, _ = postBatch(batch(1000), "forged.token.value")
		Expect(code).To(Equal(http.StatusUnauthorized), "forged token")
		code, _ = postBatch(batch(1000), podToken(second, ""))
		Expect(code).To(Equal(http.StatusUnauthorized), "a token for the API server, not the collector")
		other := batch(1000)
		other.Source = string(outside.UID)
		code, _ = postBatch(other, podToken(outside, webhook.CollectorAudience))
		Expect(code).To(Equal(http.StatusForbidden), "a pod the session does not record")
		code, _ = postBatch(batch(1000), podToken(outside, webhook.CollectorAudience))
		Expect(code).To(Equal(http.StatusForbidden), "another pod's source")
		Consistently(func() int64 { return getSession(s).Status.Requests }, 2*time.Second).Should(Equal(before))
		Expect(counted(collector.ResultUnauthenticated) - unauthenticated).To(BeNumerically("==", 3))
		Expect(counted(collector.ResultForbidden) - forbidden).To(BeNumerically("==", 2))

		By("a batch sent twice counts once")
		token := podToken(second, webhook.CollectorAudience)
		code, body := postBatch(batch(1000), token)
		Expect(code).To(Equal(http.StatusOK), body)
		code, body = postBatch(batch(1000), token)
		Expect(code).To(Equal(http.StatusOK), body)
		Eventually(func() int64 { return getSession(s).Status.Requests }).Should(Equal(before + 1))
		Consistently(func() int64 { return getSession(s).Status.Requests }, 2*time.Second).Should(Equal(before + 1))
		Expect(counted(collector.ResultDuplicate) - duplicates).To(BeNumerically(">=", 1))
	})

	It("loses nothing and counts nothing twice across a manager restart", func() {
		stopManager()
		p.kubectl("get", "configmaps")
		p.kubectl("get", "serviceaccounts")
		stopManager = startManager()
		p.kubectl("get", "secrets")
		made = p.made() + 1 // and the test's own batch
		Eventually(func() int64 { return getSession(s).Status.Requests }, 30*time.Second).Should(BeNumerically("==", made))
		Consistently(func() int64 { return getSession(s).Status.Requests }, 3*time.Second).Should(BeNumerically("==", made))
		st, err := persisted(s)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Delta.Requests).To(BeNumerically("==", made))
	})
})
