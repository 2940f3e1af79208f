package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// kubectlRun is what one kubectl invocation showed its user.
type kubectlRun struct {
	args           string
	stdout, stderr string
	code           int
}

func runKubectl(kubectl, kubeconfig, namespace string, args ...string) kubectlRun {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--kubeconfig", kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, kubectl, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		Fail(fmt.Sprintf("run kubectl: %v", err))
	}
	// Each mode works in its own namespace; compare the rest.
	normalize := func(s string) string { return strings.ReplaceAll(s, namespace, "NS") }
	return kubectlRun{args: normalize(strings.Join(args, " ")), stdout: normalize(stdout.String()), stderr: normalize(stderr.String()), code: code}
}

var largeListOnce sync.Once

// largeListSize ConfigMaps of 4 KiB each make a list of about 2 MiB.
const largeListSize = 500

// createLargeList makes a namespace with largeListSize ConfigMaps.
func createLargeList() {
	largeListOnce.Do(func() {
		cs, err := kubernetes.NewForConfig(directConfig)
		Expect(err).NotTo(HaveOccurred())
		ctx := context.Background()
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "large"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		value := strings.Repeat("x", 4096)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for i := w; i < largeListSize; i += 8 {
					_, err := cs.CoreV1().ConfigMaps("large").Create(ctx, &corev1.ConfigMap{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i)},
						Data:       map[string]string{"v": value},
					}, metav1.CreateOptions{})
					Expect(err).NotTo(HaveOccurred())
				}
			}()
		}
		wg.Wait()
	})
}

var _ = Describe("kubectl through the recording proxy", func() {
	for _, version := range []string{"kubectl.1.27", "kubectl.1.30", "kubectl.1.33", "kubectl"} {
		It("shows "+version+" the same output and exit codes as the API server itself", func() {
			kubectl, err := testenv.Kubectl(version)
			if err != nil {
				Skip(err.Error())
			}
			createLargeList()
			dir := GinkgoT().TempDir()
			manifest := filepath.Join(dir, "manifest.yaml")
			Expect(os.WriteFile(manifest, []byte(testenv.Workload), 0o600)).To(Succeed())
			tag := strings.ReplaceAll(strings.TrimPrefix(version, "kubectl"), ".", "")

			session := func(kubeconfig, ns string) []kubectlRun {
				k := func(args ...string) kubectlRun { return runKubectl(kubectl, kubeconfig, ns, args...) }
				return []kubectlRun{
					k("create", "namespace", ns),
					k("-n", ns, "apply", "-f", manifest),
					k("-n", ns, "apply", "-f", manifest),
					k("-n", ns, "get", "configmaps", "-o", "name"),
					k("-n", ns, "get", "configmap", "settings", "-o", "jsonpath={.data}"),
					k("-n", ns, "patch", "configmap", "settings", "--type", "merge", "-p", `{"data":{"b":"2"}}`),
					k("-n", ns, "label", "configmap", "settings", "tier=gold"),
					k("-n", ns, "get", "configmap", "settings", "-o", "jsonpath={.data} {.metadata.labels}"),
					k("-n", ns, "apply", "--server-side", "-f", manifest, "--force-conflicts"),
					k("-n", ns, "get", "configmap", "no-such-thing"),
					k("-n", ns, "get", "deployments", "-o", "name"),
					k("-n", ns, "scale", "deployment", "web", "--replicas=2"),
					k("-n", ns, "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"),
					k("-n", ns, "delete", "configmap", "settings"),
					k("-n", "large", "get", "configmaps", "-o", "name"),
					k("-n", "large", "get", "configmaps", "-o", "name", "--chunk-size=100"),
					k("-n", "large", "get", "configmap", "cm-0042", "-o", "yaml"),
					k("get", "--raw", "/version"),
					k("api-versions"),
				}
			}
			direct := session(directKube, "direct"+tag)
			proxied := session(proxiedKube, "proxied"+tag)
			Expect(proxied).To(HaveLen(len(direct)))
			for i := range direct {
				Expect(proxied[i]).To(Equal(direct[i]), "kubectl %s differs through the proxy", direct[i].args)
			}
			Expect(strings.Count(direct[14].stdout, "\n")).To(Equal(largeListSize))
			Expect(direct[9].code).To(Equal(1))
		})

		It("streams "+version+" --watch through the proxy: a later change arrives", func() {
			kubectl, err := testenv.Kubectl(version)
			if err != nil {
				Skip(err.Error())
			}
			ns := "watch" + strings.ReplaceAll(strings.TrimPrefix(version, "kubectl"), ".", "")
			cs, err := kubernetes.NewForConfig(directConfig)
			Expect(err).NotTo(HaveOccurred())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())

			cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", proxiedKube, "-n", ns, "get", "configmaps", "--watch", "-o", "name")
			out := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			Expect(cmd.Start()).To(Succeed())
			defer func() { cancel(); _ = cmd.Wait() }()

			// kube-root-ca.crt is not published without a controller manager,
			// so the watch starts empty; wait until it is established.
			Eventually(func() bool { return watchOpen(ns) }).Should(BeTrue())
			_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(out.String).Should(ContainSubstring("configmap/later"))
		})
	}
})

// watchOpen says whether the recorder has seen a watch of configmaps in ns
// start through the proxy.
func watchOpen(ns string) bool {
	for _, ev := range events.all() {
		if bytes.Contains(ev, []byte(`"stage":"ResponseStarted"`)) && bytes.Contains(ev, []byte("/namespaces/"+ns+"/configmaps")) {
			return true
		}
	}
	return false
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
