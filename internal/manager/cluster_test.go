package manager_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var _ = Describe("A session measuring against the live cluster", func() {
	It("hands the cluster's catalog to the sidecar: the real snoop-proxy, run from the injected pod spec, counts a custom resource request as a hit", func() {
		dir := GinkgoT().TempDir()
		By("building snoop-proxy")
		binary := filepath.Join(dir, "snoop-proxy")
		build := exec.Command("go", "build", "-o", binary, "./cmd/snoop-proxy")
		build.Dir = testenv.RepoRoot()
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))

		By("installing a custom resource and waiting until the API server publishes its OpenAPI document")
		_, err = envtest.InstallCRDs(restCfg, envtest.CRDInstallOptions{Paths: []string{testenv.WidgetsCRD()}, ErrorIfPathMissing: true})
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

		By("running the sidecar as the kubelet would: its args, env and mounted Secret and ConfigMaps")
		listen, adminPort, resultsPort := freePort(), freePort(), freePort()
		proc, err := testenv.StartContainer(ctx, admin, restCfg, pod, targets.ProxyContainerName, binary, filepath.Join(dir, "pod"),
			fmt.Sprintf("--listen=127.0.0.1:%d", listen), fmt.Sprintf("--admin-listen=127.0.0.1:%d", adminPort),
			fmt.Sprintf("--results-listen=127.0.0.1:%d", resultsPort))
		Expect(err).NotTo(HaveOccurred())
		proc.Cmd.Stdout, proc.Cmd.Stderr = GinkgoWriter, GinkgoWriter
		DeferCleanup(func() { _ = proc.Cmd.Process.Kill(); _ = proc.Cmd.Wait() })
		Eventually(func() (int, error) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}).Should(Equal(http.StatusOK))

		By("kubectl, as the pod's service account, through the sidecar, trusting the pod's bundle")
		Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}})).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "widgets", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}},
		})).To(Succeed())
		token, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		bundle, err := getConfigMap(ns, webhook.TrustBundleConfigMap)()
		Expect(err).NotTo(HaveOccurred())
		kubeconfig := filepath.Join(dir, "kubeconfig")
		Expect(clientcmd.WriteToFile(clientcmdapi.Config{
			Clusters:       map[string]*clientcmdapi.Cluster{"pod": {Server: fmt.Sprintf("https://127.0.0.1:%d", listen), CertificateAuthorityData: []byte(bundle.Data["ca.crt"])}},
			AuthInfos:      map[string]*clientcmdapi.AuthInfo{"pod": {Token: token.Status.Token}},
			Contexts:       map[string]*clientcmdapi.Context{"pod": {Cluster: "pod", AuthInfo: "pod", Namespace: ns}},
			CurrentContext: "pod",
		}, kubeconfig)).To(Succeed())
		kubectl, err := testenv.Kubectl("kubectl")
		Expect(err).NotTo(HaveOccurred())
		out, err = exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "widgets.example.com").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))

		By("the sidecar's results: a hit on the custom resource's list operation, nothing unknown")
		var results coverage.Report
		Eventually(func(g Gomega) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/results", resultsPort))
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
