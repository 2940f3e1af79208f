package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// fetch GETs a URL of the sidecar's plain-HTTP listeners.
func fetch(url string, wantStatus int) string {
	GinkgoHelper()
	resp, err := http.Get(url)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(wantStatus), url)
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return string(body)
}

var _ = Describe("The snoop-proxy sidecar binary", func() {
	It("proxies with the client's own token and serves health, metrics and results", func() {
		sc := startSidecar(GinkgoT())
		defer sc.stop()
		for range 3 {
			Expect(sc.get()).To(Succeed())
		}
		Expect(fetch(sc.admin+"/healthz", http.StatusOK)).To(Equal("ok"))
		Expect(fetch(sc.admin+"/readyz", http.StatusOK)).To(Equal("ok"))
		Expect(fetch(sc.admin+"/metrics", http.StatusOK)).To(ContainSubstring(`apisnoop_proxy_requests_total{code="2xx"}`))

		By("serving /results on the loopback results listener only")
		fetch(sc.admin+"/results", http.StatusNotFound)
		var results coverage.Report
		Expect(json.Unmarshal([]byte(fetch(sc.results+"/results", http.StatusOK)), &results)).To(Succeed())
		// startSidecar's readiness probe is one more GET.
		Expect(results.Summary.Requests).To(BeNumerically(">=", 4))
		Expect(results.Summary.Stable.Hit).To(Equal(1))
		Expect(results.Clients).To(ContainElement(HaveField("Pod", "bench-0")))
		Expect(fetch(sc.results+"/results?format=markdown", http.StatusOK)).To(ContainSubstring("listCoreV1NamespacedConfigMap"))
	})

	It("counts a custom resource request as a hit with the cluster's catalog in --catalog-file", func() {
		_, err := envtest.InstallCRDs(testEnv.Config, envtest.CRDInstallOptions{
			Paths: []string{testenv.WidgetsCRD()}, ErrorIfPathMissing: true,
		})
		Expect(err).NotTo(HaveOccurred())

		By("building the cluster's catalog as the operator does")
		disco, err := discovery.NewDiscoveryClientForConfig(testEnv.Config)
		Expect(err).NotTo(HaveOccurred())
		resolver := &releases.Resolver{Discovery: disco, ClusterTTL: 1}
		var cat *catalog.Catalog
		// The API server publishes a new CRD's OpenAPI document shortly
		// after the CRD is established.
		Eventually(func(g Gomega) {
			cat, err = resolver.Resolve(context.Background(), "cluster")
			g.Expect(err).NotTo(HaveOccurred())
			_, ok := cat.Operation("listExampleComV1NamespacedWidget")
			g.Expect(ok).To(BeTrue())
		}).Should(Succeed())
		data, err := catalog.Encode(cat)
		Expect(err).NotTo(HaveOccurred())
		file := filepath.Join(GinkgoT().TempDir(), "catalog.json.zst")
		Expect(os.WriteFile(file, data, 0o600)).To(Succeed())

		sc := startSidecar(GinkgoT(), "--release", "cluster", "--catalog-file", file)
		defer sc.stop()
		// A new CRD's API may answer 429 for a moment after it is
		// established; every answer is a request to the operation.
		Eventually(func(g Gomega) int {
			req, err := http.NewRequest(http.MethodGet, sc.url+"/apis/example.com/v1/namespaces/default/widgets", nil)
			g.Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := sc.client.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}).Should(Equal(http.StatusOK))

		var results coverage.Report
		Expect(json.Unmarshal([]byte(fetch(sc.results+"/results", http.StatusOK)), &results)).To(Succeed())
		Expect(results.Summary.Release).To(Equal(cat.Release))
		Expect(results.Summary.UnknownRequests).To(BeZero())
		Expect(results.Operations).To(ContainElement(And(
			HaveField("ID", "listExampleComV1NamespacedWidget"), HaveField("ByStatus", HaveKeyWithValue("2xx", BeNumerically("==", 1))))))
	})
})
