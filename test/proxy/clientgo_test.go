package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

var _ = Describe("client-go through the recording proxy", func() {
	It("syncs an informer and delivers add, update and delete events", func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		direct, err := kubernetes.NewForConfig(directConfig)
		Expect(err).NotTo(HaveOccurred())
		proxied, err := kubernetes.NewForConfig(proxiedConfig)
		Expect(err).NotTo(HaveOccurred())
		ns := "informer"
		_, err = direct.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = direct.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		var mu sync.Mutex
		var seen []string
		note := func(what string) { mu.Lock(); seen = append(seen, what); mu.Unlock() }
		factory := informers.NewSharedInformerFactoryWithOptions(proxied, 0, informers.WithNamespace(ns))
		inf := factory.Core().V1().ConfigMaps().Informer()
		_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { note("add " + o.(*corev1.ConfigMap).Name) },
			UpdateFunc: func(_, o any) { note("update " + o.(*corev1.ConfigMap).Name) },
			DeleteFunc: func(o any) {
				if cm, ok := o.(*corev1.ConfigMap); ok {
					note("delete " + cm.Name)
				}
			},
		})
		Expect(err).NotTo(HaveOccurred())
		factory.Start(ctx.Done())
		Expect(cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)).To(BeTrue())

		cm, err := direct.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		cm.Data = map[string]string{"k": "v"}
		_, err = direct.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(direct.CoreV1().ConfigMaps(ns).Delete(ctx, "after", metav1.DeleteOptions{})).To(Succeed())

		Eventually(func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }).
			Should(ContainElements("add before", "add after", "update after", "delete after"))

		By("counting the informer's watch when it started")
		d := recorder.Total()
		Expect(d.Operations).To(HaveKey("listCoreV1NamespacedConfigMap"))
		Expect(d.Operations["listCoreV1NamespacedConfigMap"].ByVerb).To(HaveKey("watch"))
		Expect(d.Clients).To(HaveKey(HaveField("Pod", "app-0")))
	})
})

var _ = Describe("What the proxy keeps of a request", func() {
	It("keeps no header value but the user agent: not in events, deltas, results or metrics", func() {
		const (
			markerToken  = "MARKER-TOKEN-7f3a9c"
			markerCookie = "MARKER-COOKIE-51d2e0"
			markerHeader = "MARKER-HEADER-c0ffee"
			markerAgent  = "marker-agent/1.0"
		)
		// A collector that keeps every byte it is sent.
		var shipped bytes.Buffer
		var shippedMu sync.Mutex
		collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			d, err := coverage.Decode(body)
			Expect(err).NotTo(HaveOccurred())
			shippedMu.Lock()
			defer shippedMu.Unlock()
			for k, v := range r.Header {
				if k != "Authorization" { // the shipper's own collector token
					shipped.WriteString(k + ": " + strings.Join(v, ",") + "\n")
				}
			}
			raw, _ := d.MarshalJSON()
			shipped.Write(raw)
		}))
		defer collector.Close()
		metrics := record.NewMetrics()
		shipper, err := record.NewShipper(record.ShipperConfig{URL: collector.URL, Source: "leak-test", Release: "1.37"}, recorder, metrics)
		Expect(err).NotTo(HaveOccurred())

		send := func(cfg *rest.Config, token string, path string) {
			tlsCfg, err := rest.TLSConfigFor(cfg)
			Expect(err).NotTo(HaveOccurred())
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
			req, err := http.NewRequest(http.MethodGet, cfg.Host+path, nil)
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Cookie", "session="+markerCookie)
			req.Header.Set("X-Custom", markerHeader)
			req.Header.Set("User-Agent", markerAgent)
			resp, err := client.Do(req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		tlsOnly := rest.CopyConfig(proxiedConfig)
		tlsOnly.BearerToken = ""
		send(tlsOnly, markerToken, "/api/v1/namespaces/default/configmaps") // refused: 401
		send(tlsOnly, adminToken, "/api/v1/namespaces/default/configmaps")  // allowed

		Expect(shipper.Ship(context.Background())).To(Succeed())
		results := httptest.NewRecorder()
		record.ResultsHandler(recorder, shipper).ServeHTTP(results, httptest.NewRequest(http.MethodGet, "/results", nil))
		Expect(results.Code).To(Equal(http.StatusOK))
		var metricsText bytes.Buffer
		_, err = metrics.WriteTo(&metricsText)
		Expect(err).NotTo(HaveOccurred())
		encoded, err := coverage.Encode(recorder.Total())
		Expect(err).NotTo(HaveOccurred())
		total, _ := recorder.Total().MarshalJSON()

		outputs := map[string][]byte{
			"events":          bytes.Join(events.all(), []byte("\n")),
			"shipped deltas":  shipped.Bytes(),
			"results":         results.Body.Bytes(),
			"metrics":         metricsText.Bytes(),
			"encoded delta":   encoded,
			"aggregate delta": total,
		}
		for name, data := range outputs {
			for _, marker := range []string{markerToken, markerCookie, markerHeader, adminToken} {
				Expect(bytes.Contains(data, []byte(marker))).To(BeFalse(), "%s contains %s", name, marker)
			}
		}
		// The user agent is the one header kept.
		Expect(string(outputs["events"])).To(ContainSubstring(markerAgent))
		Expect(string(outputs["aggregate delta"])).To(ContainSubstring(markerAgent))
		Expect(string(outputs["results"])).To(ContainSubstring(`"4xx"`))
	})
})
