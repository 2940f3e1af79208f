package manager_test

import (
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
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var _ = Describe("A session measuring against the live cluster", func() {
	It("hands the cluster's catalog and its schemas to the sidecar: the real snoop-proxy, run from the injected pod spec, counts a custom resource request as a hit and measures the fields of a custom resource's create", func() {
		By("installing custom resources, one with a schema, and waiting until the API server publishes their OpenAPI documents")
		_, err := envtest.InstallCRDs(restCfg, envtest.CRDInstallOptions{Paths: []string{testenv.WidgetsCRD()}, CRDs: []*apiextensionsv1.CustomResourceDefinition{gadgetsCRD()}, ErrorIfPathMissing: true})
		Expect(err).NotTo(HaveOccurred())
		clientset, err := kubernetes.NewForConfig(restCfg)
		Expect(err).NotTo(HaveOccurred())
		for _, gv := range []string{"example.com/v1", "gadgets.example.com/v1"} {
			Eventually(func() error {
				return clientset.RESTClient().Get().AbsPath("/openapi/v3/apis/" + gv).Do(ctx).Error()
			}).Should(Succeed())
		}

		ns := targetNamespace(nil)
		session(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.KubernetesRelease = snoopv1alpha1.ClusterRelease
			s.Spec.Interception = snoopv1alpha1.InterceptionEnv
			s.Spec.Recording.RequestBodies = true
		})
		pod := injectedPod(ns)
		Expect(pod.Spec.InitContainers[0].Args).To(ContainElements(
			"--catalog-file=/var/run/apisnoop/catalog/"+webhook.CatalogKey,
			"--schemas-file=/var/run/apisnoop/catalog/"+webhook.SchemasKey,
			"--keep-bodies"))

		By("the catalog ConfigMap holding the catalog and its schemas, well under the 1 MiB a ConfigMap may hold")
		// The copy may first be written from a catalog the operator read
		// before these CRDs (another spec's cluster session); it follows the
		// cluster's API within the suite's one-second check.
		cm := &corev1.ConfigMap{}
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.CatalogConfigMap}, cm)).To(Succeed())
			g.Expect(cm.BinaryData).To(HaveKey(webhook.CatalogKey))
			g.Expect(cm.BinaryData).To(HaveKey(webhook.SchemasKey))
			schemas, err := catalog.DecodeSchemas(cm.BinaryData[webhook.SchemasKey])
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(schemas.HasFieldPath("createGadgetsExampleComV1NamespacedGadget", "spec.parts[].count")).To(BeTrue())
		}, 30*time.Second).Should(Succeed())
		catalogBytes, schemasBytes := len(cm.BinaryData[webhook.CatalogKey]), len(cm.BinaryData[webhook.SchemasKey])
		AddReportEntry("catalog ConfigMap bytes", fmt.Sprintf("catalog %d, schemas %d", catalogBytes, schemasBytes))
		Expect(catalogBytes + schemasBytes).To(BeNumerically("<", 512<<10))

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
		Expect(results.Summary.Fields).To(BeNil(), "no body was recorded yet")

		By("creating a gadget through the sidecar: its body's paths under the CRD's spec are measured")
		manifest := filepath.Join(GinkgoT().TempDir(), "gadget.json")
		Expect(os.WriteFile(manifest, []byte(`{"apiVersion": "gadgets.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
			"spec": {"size": 3, "color": "red", "parts": [{"name": "bolt", "count": 4}]}}`), 0o600)).To(Succeed())
		out, err = exec.Command(kubectl, "--kubeconfig", sc.Kubeconfig, "create", "-f", manifest).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Eventually(func(g Gomega) {
			resp, err := http.Get(sc.ResultsURL)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			results = coverage.Report{}
			g.Expect(json.NewDecoder(resp.Body).Decode(&results)).To(Succeed())
			g.Expect(results.Summary.Fields).NotTo(BeNil())
			g.Expect(results.Summary.Fields.Schemas).To(BeTrue())
			var create *coverage.FieldReport
			for _, op := range results.Operations {
				if op.ID == "createGadgetsExampleComV1NamespacedGadget" {
					create = op.Fields
				}
			}
			g.Expect(create).NotTo(BeNil())
			g.Expect(create.Bodies).To(BeEquivalentTo(1))
			var hit []string
			for _, h := range create.Set {
				if !h.NotInSchema {
					hit = append(hit, h.Path)
				}
			}
			g.Expect(hit).To(ContainElements("spec.size", "spec.color", "spec.parts[].name", "spec.parts[].count"))
			g.Expect(create.Unknown).To(BeEmpty())
			g.Expect(create.InSchema).To(BeNumerically(">", create.Hit))
		}, 5*time.Second).Should(Succeed())
	})
})

var _ = Describe("The catalog copies of a session measuring against the live cluster", func() {
	It("follow the cluster's API: a custom resource installed after the session started reaches the copy injected pods read, within the check interval", func() {
		ns := targetNamespace(nil)
		session(ns, func(s *snoopv1alpha1.SnoopSession) { s.Spec.KubernetesRelease = snoopv1alpha1.ClusterRelease })
		readCopy := func(g Gomega) *catalog.Catalog {
			cm := &corev1.ConfigMap{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: webhook.CatalogConfigMap}, cm)).To(Succeed())
			c, err := catalog.Decode(cm.BinaryData[webhook.CatalogKey])
			g.Expect(err).NotTo(HaveOccurred())
			return c
		}
		const listDoohickeys = "listToysExampleOrgV1NamespacedDoohickey"
		Eventually(func(g Gomega) {
			g.Expect(readCopy(g).Operations).NotTo(ContainElement(HaveField("ID", listDoohickeys)))
		}).Should(Succeed())

		By("installing a custom resource the copy does not know")
		crd := testenv.NamespacedCRD("toys.example.org", "doohickeys", "Doohickey", nil)
		_, err := envtest.InstallCRDs(restCfg, envtest.CRDInstallOptions{CRDs: []*apiextensionsv1.CustomResourceDefinition{crd}})
		Expect(err).NotTo(HaveOccurred())
		installed := time.Now()

		By("the copy in the target namespace holding its operations")
		Eventually(func(g Gomega) {
			g.Expect(readCopy(g).Operations).To(ContainElement(HaveField("ID", listDoohickeys)))
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
		AddReportEntry("custom resource to catalog copy", time.Since(installed).Round(100*time.Millisecond).String())
	})
})

// gadgetsCRD is a custom resource whose spec has a schema, unlike widgets,
// which preserves unknown fields.
func gadgetsCRD() *apiextensionsv1.CustomResourceDefinition {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	integer := apiextensionsv1.JSONSchemaProps{Type: "integer"}
	return testenv.NamespacedCRD("gadgets.example.com", "gadgets", "Gadget", &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
				"size":  integer,
				"color": {Type: "string", Enum: []apiextensionsv1.JSON{{Raw: []byte(`"red"`)}, {Raw: []byte(`"blue"`)}}},
				"parts": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"name": str, "count": integer},
				}}},
				"owner": str,
			}},
		},
	})
}
