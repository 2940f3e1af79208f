package manager_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var _ = Describe("A session measuring against the live cluster", func() {
	It("hands the cluster's catalog to the sidecar: the real snoop-proxy, run from the injected pod spec, counts a custom resource request as a hit", func() {
		By("installing a custom resource and waiting until the API server publishes its OpenAPI document")
		_, err := envtest.InstallCRDs(restCfg, envtest.CRDInstallOptions{Paths: []string{testenv.WidgetsCRD()}, ErrorIfPathMissing: true})
		Expect(err).NotTo(HaveOccurred())
		clientset, err := kubernetes.NewForConfig(restCfg)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			return clientset.RESTClient().Get().AbsPath("/openapi/v3/apis/example.com/v1").Do(ctx).Error()
		}).Should(Succeed())

		ns := targetNamespace(nil)
		session(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.KubernetesRelease = snoopv1alpha1.ClusterRelease
			s.Spec.Interception = snoopv1alpha1.InterceptionEnv
		})
		pod := injectedPod(ns)
		Expect(pod.Spec.InitContainers[0].Args).To(ContainElement("--catalog-file=/var/run/apisnoop/catalog/" + webhook.CatalogKey))

		By("running the sidecar as the kubelet would, and kubectl through it as the pod's service account, trusting the pod's bundle")
		sc, err := testoperator.StartSidecar(ctx, admin, restCfg, pod, sidecarBinary(), GinkgoT().TempDir(), "cluster-admin", time.Second, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sc.Stop)
		kubectl, err := testenv.Kubectl("kubectl")
		Expect(err).NotTo(HaveOccurred())
		out, err := exec.Command(kubectl, "--kubeconfig", sc.Kubeconfig, "get", "widgets.example.com").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))

		By("the sidecar's results: a hit on the custom resource's list operation, nothing unknown")
		var results coverage.Report
		Eventually(func(g Gomega) {
			resp, err := http.Get(sc.ResultsURL)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(json.Unmarshal(body, &results)).To(Succeed())
			g.Expect(results.Operations).To(ContainElement(And(
				HaveField("ID", "listExampleComV1NamespacedWidget"), HaveField("Hits", BeNumerically(">=", 1)))))
		}, 5*time.Second).Should(Succeed())
		Expect(results.Summary.Release).To(HavePrefix(snoopv1alpha1.ClusterRelease))
		Expect(results.Summary.UnknownRequests).To(BeZero(), "kubectl's discovery requests are operations of the cluster too")
	})
})
