//go:build e2e

// Package e2e runs the whole product on a real node (hack/node): the
// operator installed by its Helm chart, real pods injected by its webhook,
// their API calls through the sidecar, and the results in their sessions.
//
// It runs inside the node's network namespace, where the API server, the
// kubelet and every pod live; `make e2e` builds the images, starts the node,
// runs this suite there and stops the node. Every connection it makes goes
// to the API server, to the namespace's loopback (port-forward) or through
// the API server to a pod, all inside that namespace.
//
// Settings, all from the environment (make e2e sets them):
//
//	KUBECONFIG      the node's admin kubeconfig
//	E2E_KUBECTL     the kubectl binary (default: kubectl in PATH)
//	E2E_HELM        the helm binary (default: helm in PATH)
//	E2E_IMAGE_TAG   the tag make image gave apisnoop.dev/{apisnoop,apisnoop-testkit}
//
// Nothing is skipped: a missing setting fails the suite.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

const (
	// releaseName and releaseNamespace are where the chart is installed.
	releaseName      = "apisnoop"
	releaseNamespace = "apisnoop-system"
	// imageRepo is make image's IMAGE_REPO.
	imageRepo = "apisnoop.dev"
)

var (
	ctx      context.Context
	cancel   context.CancelFunc
	restCfg  *rest.Config
	admin    client.Client
	kubectl  string
	helm     string
	imageTag string
	// cacheDir is kubectl's and helm's cache and config, removed at the end.
	cacheDir string
	// testNamespaces are the namespaces the specs made, for the failure dump.
	testNamespaces []string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kube-apisnoop e2e on a real node")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	// The envtest suites' logger and defaults, with the longer waits of a
	// real node (image pulls, pod starts).
	suite.Configure()
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	SetDefaultEventuallyTimeout(2 * time.Minute)

	kubeconfig := os.Getenv("KUBECONFIG")
	Expect(kubeconfig).NotTo(BeEmpty(), "KUBECONFIG: run the suite with hack/node/node.sh exec (make e2e)")
	imageTag = os.Getenv("E2E_IMAGE_TAG")
	Expect(imageTag).NotTo(BeEmpty(), "E2E_IMAGE_TAG: the tag of make image's images")
	kubectl = tool("E2E_KUBECTL", "kubectl")
	helm = tool("E2E_HELM", "helm")

	var err error
	restCfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	restCfg.QPS, restCfg.Burst = 50, 100
	admin, err = client.New(restCfg, client.Options{Scheme: scheme.New()})
	Expect(err).NotTo(HaveOccurred())

	cacheDir, err = os.MkdirTemp("", "apisnoop-e2e")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = os.RemoveAll(cacheDir) })
	DeferCleanup(func() { cancel() })
})

// tool is the binary named by env, or name in PATH; missing, the suite
// fails.
func tool(env, name string) string {
	GinkgoHelper()
	path := os.Getenv(env)
	if path == "" {
		path = name
	}
	found, err := exec.LookPath(path)
	Expect(err).NotTo(HaveOccurred(), "%s: set %s", name, env)
	return found
}

// chartDir is the chart under test.
func chartDir() string {
	return filepath.Join(testenv.RepoRoot(), "charts", "kube-apisnoop")
}

// image is one of make image's images.
func image(name string) string {
	return fmt.Sprintf("%s/%s:%s", imageRepo, name, imageTag)
}

// toolEnv keeps kubectl's and helm's caches and config in cacheDir.
func toolEnv() []string {
	return append(os.Environ(),
		"KUBECACHEDIR="+filepath.Join(cacheDir, "kube"),
		"HELM_CACHE_HOME="+filepath.Join(cacheDir, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(cacheDir, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(cacheDir, "helm-data"),
	)
}

// run runs a binary with a deadline and returns its combined output.
func run(timeout time.Duration, bin string, args ...string) (string, error) {
	c, stop := context.WithTimeout(ctx, timeout)
	defer stop()
	cmd := exec.CommandContext(c, bin, args...)
	cmd.Env = toolEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// kube runs kubectl and expects it to succeed.
func kube(args ...string) string {
	GinkgoHelper()
	out, err := run(time.Minute, kubectl, args...)
	Expect(err).NotTo(HaveOccurred(), "kubectl %s:\n%s", strings.Join(args, " "), out)
	return out
}

// On a failure, everything worth reading before the node goes: the state
// of the operator's and the tests' namespaces, and the node's component
// logs.
var _ = ReportAfterEach(func(report SpecReport) {
	if !report.Failed() {
		return
	}
	dump()
})

func dump() {
	w := GinkgoWriter
	section := func(title string, bin string, args ...string) {
		out, err := run(time.Minute, bin, args...)
		fmt.Fprintf(w, "\n===== %s =====\n%s", title, out)
		if err != nil {
			fmt.Fprintf(w, "(%v)\n", err)
		}
	}
	for _, ns := range append([]string{releaseNamespace}, testNamespaces...) {
		section("pods in "+ns, kubectl, "get", "pods", "-o", "wide", "-n", ns)
		section("describe pods in "+ns, kubectl, "describe", "pods", "-n", ns)
		section("sessions in "+ns, kubectl, "describe", "snoopsessions", "-n", ns)
		section("events in "+ns, kubectl, "get", "events", "-n", ns, "--sort-by=.lastTimestamp")
		section("logs in "+ns, kubectl, "logs", "-n", ns, "--all-containers", "--prefix", "--tail=100", "-l", "!e2e.apisnoop.dev/none")
	}
	section("nodes", kubectl, "describe", "nodes")
	section("webhooks", kubectl, "get", "mutatingwebhookconfigurations", "-o", "yaml")
	logs, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "bin", "node", "logs", "*.log"))
	for _, f := range logs {
		if strings.HasSuffix(f, ".previous.log") {
			continue
		}
		section("tail "+f, "tail", "-n", "60", f)
	}
}
