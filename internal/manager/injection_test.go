package manager_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

var demoLabels = map[string]string{"app": "demo"}

// targetNamespace makes a namespace as a cluster would have it: with the
// kube-root-ca.crt that the kube-controller-manager publishes (envtest runs
// none, so the test publishes the API server's CA itself).
func targetNamespace(labels map[string]string) string {
	GinkgoHelper()
	ns := suite.Namespace(controlPlane, "target", labels)
	Expect(testenv.PublishRootCA(ctx, admin, ns, restCfg.CAData)).To(Succeed())
	return ns
}

// session creates a session and waits until the controller made it Ready.
func session(ns string, mutate func(*snoopv1alpha1.SnoopSession)) *snoopv1alpha1.SnoopSession {
	GinkgoHelper()
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "session", Namespace: ns},
		Spec: snoopv1alpha1.SnoopSessionSpec{
			KubernetesRelease: "1.37",
			Targets:           snoopv1alpha1.Targets{PodSelector: &metav1.LabelSelector{MatchLabels: demoLabels}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	Expect(admin.Create(ctx, s)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(s), s)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionReady)).To(BeTrue())
	}).Should(Succeed())
	return s
}

func appPod(ns string, labels map[string]string) *corev1.Pod { return testenv.AppPod(ns, labels) }

// webhookConfiguration is the MutatingWebhookConfiguration as stored.
func webhookConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	GinkgoHelper()
	config := &admissionregistrationv1.MutatingWebhookConfiguration{}
	Expect(admin.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, config)).To(Succeed())
	return config
}

func createPod(pod *corev1.Pod) *corev1.Pod {
	GinkgoHelper()
	Expect(admin.Create(ctx, pod)).To(Succeed())
	return pod
}

func initNames(pod *corev1.Pod) []string {
	var out []string
	for _, c := range pod.Spec.InitContainers {
		out = append(out, c.Name)
	}
	return out
}

// injectedPod creates pods until one comes back injected: the first pods of a
// new session are admitted unrecorded until the operator has written the
// namespace's trust objects, a second or so.
func injectedPod(ns string) *corev1.Pod {
	GinkgoHelper()
	var pod *corev1.Pod
	Eventually(func() []string {
		pod = createPod(appPod(ns, demoLabels))
		return initNames(pod)
	}).Should(ContainElement(targets.ProxyContainerName))
	return pod
}

// served is the certificate a TLS server at addr presents for serverName,
// verified against roots.
func served(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// handshakes serves TLS handshakes with config on loopback until the test
// ends, and returns its address.
func handshakes(config *tls.Config) string {
	GinkgoHelper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", config)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(ln.Close)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	return ln.Addr().String()
}

func getSecret(ns, name string) func() (*corev1.Secret, error) {
	return func() (*corev1.Secret, error) {
		s := &corev1.Secret{}
		return s, admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	}
}

func getConfigMap(ns, name string) func() (*corev1.ConfigMap, error) {
	return func() (*corev1.ConfigMap, error) {
		cm := &corev1.ConfigMap{}
		return cm, admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)
	}
}

// caPEM is the operator's CA certificate, once the operator has made it.
func caPEM() []byte {
	GinkgoHelper()
	ca := &corev1.Secret{}
	Eventually(func() error {
		return admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: manager.CASecretName}, ca)
	}).Should(Succeed())
	return ca.Data[corev1.TLSCertKey]
}

var _ = Describe("Injection, live", Ordered, func() {
	It("fills the webhook configuration's caBundle with the operator's CA", func() {
		Eventually(func(g Gomega) {
			config := &admissionregistrationv1.MutatingWebhookConfiguration{}
			g.Expect(admin.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, config)).To(Succeed())
			g.Expect(config.Webhooks).NotTo(BeEmpty())
			for _, w := range config.Webhooks {
				g.Expect(w.ClientConfig.CABundle).To(Equal(caPEM()))
			}
		}).Should(Succeed())
	})

	It("injects a target pod, whose Secret and ConfigMap exist in its namespace, and whose bundle verifies the API server and the proxy", func() {
		ns := targetNamespace(nil)
		session(ns, nil)
		pod := injectedPod(ns)
		Expect(initNames(pod)).To(Equal([]string{targets.ProxyContainerName, webhook.IPTablesContainerName, "migrate"}))
		Expect(pod.Spec.InitContainers[0].RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(pod.Spec.InitContainers[0].Image).To(Equal(sidecarImage))
		Expect(pod.Annotations).To(HaveKeyWithValue(webhook.AnnotationSession, ns+"/session"))

		By("every Secret and ConfigMap the pod mounts exists in its namespace")
		var bundle []byte
		var pair *corev1.Secret
		for _, v := range pod.Spec.Volumes {
			switch {
			case v.Secret != nil:
				s, err := getSecret(ns, v.Secret.SecretName)()
				Expect(err).NotTo(HaveOccurred(), v.Secret.SecretName)
				Expect(v.Secret.SecretName).To(Equal(webhook.ProxyCertSecret))
				pair = s
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.ConfigMap == nil {
						continue
					}
					Expect(src.ConfigMap.Name).To(Equal(webhook.TrustBundleConfigMap))
					cm, err := getConfigMap(ns, src.ConfigMap.Name)()
					Expect(err).NotTo(HaveOccurred())
					bundle = []byte(cm.Data["ca.crt"])
				}
			}
		}
		Expect(pair).NotTo(BeNil())
		Expect(bundle).NotTo(BeEmpty())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(bundle)).To(BeTrue())

		By("the bundle verifies the real API server's certificate")
		apiURL, err := url.Parse(restCfg.Host)
		Expect(err).NotTo(HaveOccurred())
		_, err = served(apiURL.Host, apiURL.Hostname(), roots)
		Expect(err).NotTo(HaveOccurred())

		By("and the proxy's certificate for kubernetes.default.svc")
		cert, err := tls.X509KeyPair(pair.Data[corev1.TLSCertKey], pair.Data[corev1.TLSPrivateKeyKey])
		Expect(err).NotTo(HaveOccurred())
		addr := handshakes(&tls.Config{Certificates: []tls.Certificate{cert}})
		_, err = served(addr, "kubernetes.default.svc", roots)
		Expect(err).NotTo(HaveOccurred())
	})

	It("leaves alone pods it must not touch", func() {
		ns := targetNamespace(nil)
		session(ns, nil)
		injectedPod(ns) // the session records here

		By("pods outside every session, opted out, or on the host network")
		Expect(initNames(createPod(appPod(ns, map[string]string{"app": "other"})))).To(Equal([]string{"migrate"}))
		Expect(initNames(createPod(appPod(ns, map[string]string{"app": "demo", snoopv1alpha1.IgnoreLabel: "true"})))).To(Equal([]string{"migrate"}))
		host := appPod(ns, demoLabels)
		host.Spec.HostNetwork = true
		Expect(initNames(createPod(host))).To(Equal([]string{"migrate"}))

		By("pods in a namespace labelled " + snoopv1alpha1.IgnoreLabel + ", in kube-system and in the operator's namespace")
		ignored := targetNamespace(map[string]string{snoopv1alpha1.IgnoreLabel: ""})
		session(ignored, nil)
		for _, other := range []string{ignored, "kube-system", namespace} {
			s := session(other, func(s *snoopv1alpha1.SnoopSession) { s.Name = "everything"; s.Spec.Targets = snoopv1alpha1.Targets{} })
			Consistently(func() []string { return initNames(createPod(appPod(other, demoLabels))) }, 2*time.Second, 500*time.Millisecond).
				Should(Equal([]string{"migrate"}), other)
			Expect(admin.Delete(ctx, s)).To(Succeed())
		}
		_, err := getConfigMap(ignored, webhook.TrustBundleConfigMap)()
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "nothing is written where nothing is injected")

		By("pods created after the session's stop time")
		late := targetNamespace(nil)
		s := session(late, nil)
		injectedPod(late)
		base := s.DeepCopy()
		s.Spec.StopAt = &metav1.Time{Time: time.Now().Add(-time.Second)}
		Expect(admin.Patch(ctx, s, client.MergeFrom(base))).To(Succeed())
		Eventually(func() []string { return initNames(createPod(appPod(late, demoLabels))) }).Should(Equal([]string{"migrate"}))
	})

	It("repairs a deleted or edited copy within seconds, and removes both with the namespace's last session", func() {
		ns := targetNamespace(nil)
		s := session(ns, nil)
		injectedPod(ns)
		original, err := getConfigMap(ns, webhook.TrustBundleConfigMap)()
		Expect(err).NotTo(HaveOccurred())

		Expect(admin.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.ProxyCertSecret}})).To(Succeed())
		Eventually(getSecret(ns, webhook.ProxyCertSecret), 5*time.Second).Should(HaveField("Data", HaveKey(corev1.TLSCertKey)))

		edited := original.DeepCopy()
		edited.Data["ca.crt"] = "not a certificate"
		Expect(admin.Update(ctx, edited)).To(Succeed())
		Eventually(getConfigMap(ns, webhook.TrustBundleConfigMap), 5*time.Second).Should(HaveField("Data", Equal(original.Data)))

		Expect(admin.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhook.TrustBundleConfigMap}})).To(Succeed())
		Eventually(getConfigMap(ns, webhook.TrustBundleConfigMap), 5*time.Second).Should(HaveField("Data", Equal(original.Data)))

		By("deleting the namespace's last session")
		Expect(admin.Delete(ctx, s)).To(Succeed())
		Eventually(func() bool {
			_, errS := getSecret(ns, webhook.ProxyCertSecret)()
			_, errC := getConfigMap(ns, webhook.TrustBundleConfigMap)()
			return apierrors.IsNotFound(errS) && apierrors.IsNotFound(errC)
		}).Should(BeTrue())
	})

	It("keeps the API server calling the webhook across a renewal of its certificate and a broken caBundle", func() {
		ns := targetNamespace(nil)
		session(ns, nil)
		injectedPod(ns)
		key := client.ObjectKey{Namespace: namespace, Name: manager.WebhookCertSecretName}
		old := &corev1.Secret{}
		Expect(admin.Get(ctx, key, old)).To(Succeed())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(caPEM())).To(BeTrue())
		addr := fmt.Sprintf("127.0.0.1:%d", operator.WebhookPort)

		By("forcing a renewal: the pair's Secret is deleted")
		Expect(admin.Delete(ctx, old)).To(Succeed())
		renewed := &corev1.Secret{}
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, key, renewed)).To(Succeed())
			g.Expect(renewed.Data[corev1.TLSCertKey]).NotTo(Equal(old.Data[corev1.TLSCertKey]))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			leaf, err := served(addr, "127.0.0.1", roots)
			g.Expect(err).NotTo(HaveOccurred())
			pair, err := tls.X509KeyPair(renewed.Data[corev1.TLSCertKey], renewed.Data[corev1.TLSPrivateKeyKey])
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(leaf.Equal(pair.Leaf)).To(BeTrue())
		}, 10*time.Second).Should(Succeed())
		for range 5 {
			Expect(initNames(createPod(appPod(ns, demoLabels)))).To(ContainElement(targets.ProxyContainerName))
		}

		By("breaking the caBundle: it is set back")
		config := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, config)).To(Succeed())
		config.Webhooks[0].ClientConfig.CABundle = renewed.Data[corev1.TLSCertKey] // a leaf, not the CA
		Expect(admin.Update(ctx, config)).To(Succeed())
		Eventually(func() []byte {
			Expect(admin.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, config)).To(Succeed())
			return config.Webhooks[0].ClientConfig.CABundle
		}, 5*time.Second).Should(Equal(caPEM()))
		Eventually(func() []string { return initNames(createPod(appPod(ns, demoLabels))) }).Should(ContainElement(targets.ProxyContainerName))
	})

	It("with the manager stopped, still lets pods be created", func() {
		ns := targetNamespace(nil)
		session(ns, nil)
		injectedPod(ns)
		stopManager()
		DeferCleanup(func() { stopManager = startManager() })
		start := time.Now()
		pod := createPod(appPod(ns, demoLabels))
		Expect(initNames(pod)).To(Equal([]string{"migrate"}))
		GinkgoWriter.Printf("Pod created with the manager down in %s\n", time.Since(start))
	})

	It("labels what it writes, so that its cache holds nothing else", func() {
		var list corev1.SecretList
		Expect(admin.List(ctx, &list, client.MatchingLabels{snoopv1alpha1.ManagedByLabel: snoopv1alpha1.ManagedByValue})).To(Succeed())
		Expect(list.Items).NotTo(BeEmpty())
	})
})

var _ = Describe("The operator's namespace", func() {
	It("keeps its proxy pair, whatever sessions there select", func() {
		before := &corev1.Secret{}
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: manager.ProxyCertSecretName}, before)
		}).Should(Succeed())
		s := session(namespace, func(s *snoopv1alpha1.SnoopSession) { s.Name = "in-operator-namespace" })
		Expect(admin.Delete(ctx, s)).To(Succeed())
		Consistently(func() ([]byte, error) {
			after := &corev1.Secret{}
			err := admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: manager.ProxyCertSecretName}, after)
			return after.Data[corev1.TLSCertKey], err
		}, 2*time.Second).Should(Equal(before.Data[corev1.TLSCertKey]))
	})
})
