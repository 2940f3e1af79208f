package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

var _ = Describe("The snoop-proxy sidecar binary", func() {
	It("proxies with the client's own token and serves health, metrics and results", func() {
		sc := startSidecar(GinkgoT())
		defer sc.stop()
		for range 3 {
			Expect(sc.get()).To(Succeed())
		}
		fetch := func(path string) string {
			resp, err := http.Get(sc.admin + path)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusOK), path)
			body, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			return string(body)
		}
		Expect(fetch("/healthz")).To(Equal("ok"))
		Expect(fetch("/readyz")).To(Equal("ok"))
		Expect(fetch("/metrics")).To(ContainSubstring(`apisnoop_proxy_requests_total{code="2xx"}`))

		var results coverage.Report
		Expect(json.Unmarshal([]byte(fetch("/results")), &results)).To(Succeed())
		// startSidecar's readiness probe is one more GET.
		Expect(results.Summary.Requests).To(BeNumerically(">=", 4))
		Expect(results.Summary.Stable.Hit).To(Equal(1))
		Expect(results.Clients).To(ContainElement(HaveField("Pod", "bench-0")))
		Expect(fetch("/results?format=markdown")).To(ContainSubstring("listCoreV1NamespacedConfigMap"))
	})
})
