// Command demo runs kube-apisnoop's main job on a local control plane, with
// no cluster needed: it starts kube-apiserver and etcd (built by
// hack/build-control-plane.sh), installs the CRD and the pod webhook's
// configuration, runs the manager, applies the sample SnoopSession with the
// machine's kubectl, shows a pod injected by the webhook, runs that pod's
// sidecar as a local process (no node runs pods here) with kubectl as the
// pod's workload, and shows the recorded coverage as a user sees it with
// kubectl get, describe and kubectl-snoop report.
//
// Run it with `make demo`. With -keep it stays up until interrupted and
// prints a kubeconfig to use meanwhile.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	certutil "k8s.io/client-go/util/cert"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/report"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
)

func main() {
	keep := flag.Bool("keep", false, "keep the control plane and manager running until interrupted")
	kubectl := flag.String("kubectl", "kubectl", "kubectl binary to drive the control plane with")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubectl, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubectl string, keep bool) (retErr error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))

	step("Starting a local control plane (kube-apiserver v%s and etcd from bin/)", testenv.KubeVersion)
	// The API server logs every request, for the coverage shown at the
	// end; kubectl and kubectl-snoop use the control plane's admin
	// kubeconfig, a client certificate of system:masters.
	cp, err := testenv.Start(testenv.WithAuditLog())
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, cp.Stop()) }()
	cfg, c, kubeconfig := cp.Config, cp.Client, cp.Kubeconfig
	// The sidecar's files and the invalid sample.
	workDir, err := os.MkdirTemp("", "apisnoop-demo")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(workDir)

	step("Running the manager against it (namespace %s)", operatorNamespace)
	// As config/ installs it: its namespace, service account, the generated
	// RBAC and the webhook configuration, which calls the manager on
	// loopback (a manager run outside the cluster); the operator fills its
	// caBundle.
	operator, err := testoperator.Install(ctx, cfg, c, demoImage)
	if err != nil {
		return err
	}
	// What the kube-controller-manager, which the local control plane
	// lacks, publishes in every namespace: injected pods trust it.
	if err := testenv.PublishRootCA(ctx, c, "default", cfg.CAData); err != nil {
		return err
	}
	stopManager, err := operator.Start(ctx, ctrl.Options{})
	if err != nil {
		return err
	}
	managerStopped := false
	defer func() {
		if !managerStopped {
			_ = stopManager()
		}
	}()

	k := func(args ...string) error {
		return runShown(ctx, []string{"KUBECONFIG=" + kubeconfig}, kubectl, args...)
	}

	step("The proxy serving certificate: requested through a CertificateSigningRequest, approved and signed by the operator")
	if err := waitForSecret(ctx, c, client.ObjectKey{Namespace: operatorNamespace, Name: manager.ProxyCertSecretName}); err != nil {
		return err
	}
	if err := k("get", "csr", "-o", "custom-columns=NAME:.metadata.name,SIGNER:.spec.signerName,REQUESTOR:.spec.username,CONDITION:.status.conditions[0].type,REASON:.status.conditions[0].reason"); err != nil {
		return err
	}
	if err := k("get", "secret", "-n", operatorNamespace); err != nil {
		return err
	}
	if err := printProxyCert(ctx, c); err != nil {
		return err
	}

	step("Creating pod demo-a labelled app=demo, then applying config/samples/")
	if err := c.Create(ctx, demoPod("demo-a")); err != nil {
		return fmt.Errorf("create pod demo-a: %w", err)
	}
	if err := k("apply", "-f", filepath.Join(testenv.RepoRoot(), "config", "samples")); err != nil {
		return err
	}
	if err := waitForStatus(ctx, c, client.ObjectKey{Namespace: "default", Name: "demo"}); err != nil {
		return err
	}

	step("Pod demo-b, created after the session: the webhook injects the recording proxy (demo-a waits for a restart)")
	if err := createInjected(ctx, c, "demo-b"); err != nil {
		return err
	}
	if err := k("get", "pods", "-o", `custom-columns=NAME:.metadata.name,INIT CONTAINERS:.spec.initContainers[*].name,SESSION:.metadata.annotations.snoop\.apisnoop\.dev/session`); err != nil {
		return err
	}
	step("What injected pods mount, kept by the operator in their namespace; the webhook configuration's caBundle, kept by the operator")
	if err := k("get", "secret,configmap", "-l", "app.kubernetes.io/managed-by=kube-apisnoop"); err != nil {
		return err
	}
	if err := printWebhookCA(ctx, c); err != nil {
		return err
	}
	if err := waitForInjected(ctx, c, client.ObjectKey{Namespace: "default", Name: "demo"}); err != nil {
		return err
	}

	step("No node runs pods here, so the demo runs demo-b's injected sidecar as a local process, built from the pod spec the webhook returned\n" +
		"  (its args, env, the mounted Secret apisnoop-proxy-tls, ConfigMap apisnoop-ca-bundle and collector token); it ships to the manager's collector")
	demoB := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "demo-b"}, demoB); err != nil {
		return err
	}
	sidecar, err := testoperator.StartSidecar(ctx, c, cfg, demoB, filepath.Join(testenv.RepoRoot(), "bin", "snoop-proxy"), workDir, "cluster-admin", time.Second, io.Discard)
	if err != nil {
		return err
	}
	defer func() { _ = sidecar.Stop() }()
	step("The pod's workload: kubectl as the pod's service account, through its sidecar, trusting the pod's CA bundle")
	podKubectl := func(args ...string) error {
		return runShown(ctx, []string{"KUBECONFIG=" + sidecar.Kubeconfig}, kubectl, args...)
	}
	for _, args := range [][]string{
		{"get", "configmaps"},
		{"create", "configmap", "settings", "--from-literal=mode=demo"},
		{"patch", "configmap", "settings", "--type=merge", "-p", `{"data":{"mode":"patched"}}`},
		{"get", "configmap", "settings", "-o", "jsonpath={.data}"},
		{"delete", "configmap", "settings"},
		{"get", "pods,services,deployments"},
	} {
		if err := podKubectl(args...); err != nil {
			return err
		}
		fmt.Println()
	}
	if err := waitForRequests(ctx, c, client.ObjectKey{Namespace: "default", Name: "demo"}); err != nil {
		return err
	}

	step("kubectl get snoop")
	if err := k("get", "snoop"); err != nil {
		return err
	}
	step("kubectl get snoop -o wide")
	if err := k("get", "snoop", "-o", "wide"); err != nil {
		return err
	}
	step("kubectl describe snoop demo")
	if err := k("describe", "snoop", "demo"); err != nil {
		return err
	}

	step("The session's results, from its ConfigMaps (kubectl-snoop report)")
	if err := runShown(ctx, []string{"KUBECONFIG=" + kubeconfig}, filepath.Join(testenv.RepoRoot(), "bin", "kubectl-snoop"), "report", "demo", "--max-rows", "12", "--untested=false"); err != nil {
		return err
	}
	if err := k("get", "configmap", "-l", "snoop.apisnoop.dev/session=demo"); err != nil {
		return err
	}

	step("The same as one self-contained HTML page (kubectl-snoop report -o html)")
	if err := writeHTMLReport(ctx, kubeconfig, filepath.Join(testenv.RepoRoot(), "bin", "demo", "report.html")); err != nil {
		return err
	}

	step("An invalid session is refused with a message that names the field")
	bad := filepath.Join(workDir, "invalid-session.yaml")
	if err := os.WriteFile(bad, []byte(invalidSession), 0o600); err != nil {
		return fmt.Errorf("write invalid sample: %w", err)
	}
	if err := k("apply", "-f", bad); err == nil {
		return errors.New("the API server accepted an invalid SnoopSession")
	}

	step("Recording real kubectl traffic through the recording proxy (kubectl-snoop record, client-certificate credentials)")
	snoop := filepath.Join(testenv.RepoRoot(), "bin", "kubectl-snoop")
	if err := runShown(ctx, nil, snoop, "record", "--kubeconfig", kubeconfig, "--max-rows", "10", "--",
		kubectl, "get", "pods,snoopsessions", "-A"); err != nil {
		return err
	}

	step("API coverage of everything above, from the API server's audit log (kubectl-snoop coverage)")
	if err := printCoverage(cp.AuditLog); err != nil {
		return err
	}

	if keep {
		step("Control plane and manager keep running; press Ctrl-C to stop.\n  export KUBECONFIG=%s", kubeconfig)
		<-ctx.Done()
	}
	managerStopped = true
	return stopManager()
}

// operatorNamespace holds the operator's CA and proxy certificate Secrets.
const operatorNamespace = "apisnoop-system" // as testenv.InstallOperator names it

// demoImage is the sidecar image named in injected pods; nothing runs them
// on a control plane without nodes.
const demoImage = "apisnoop:dev"

func demoPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "demo"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "demo:dev"}}},
	}
}

// createInjected creates a pod until it comes back injected: the first pods
// of a new session are admitted unrecorded (fail open) until the operator
// has written the namespace's certificate and trust bundle, a moment later.
func createInjected(ctx context.Context, c client.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		pod := demoPod(name)
		if err := c.Create(ctx, pod); err != nil {
			return fmt.Errorf("create pod %s: %w", name, err)
		}
		if targets.HasProxy(pod) {
			return nil
		}
		if err := c.Delete(ctx, pod); err != nil {
			return fmt.Errorf("delete unrecorded pod %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s was not injected: %w", name, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// printProxyCert shows the names and lifetime of the issued certificate.
func printProxyCert(ctx context.Context, c client.Client) error {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: manager.ProxyCertSecretName}, secret); err != nil {
		return err
	}
	certs, err := certutil.ParseCertsPEM(secret.Data[corev1.TLSCertKey])
	if err != nil {
		return err
	}
	ca, err := certutil.ParseCertsPEM(secret.Data[issuer.SecretKeyCA])
	if err != nil {
		return err
	}
	leaf := certs[0]
	fmt.Printf("  issuer %q, valid %s to %s\n  DNS names %v\n  IP addresses %v\n",
		ca[0].Subject.CommonName, leaf.NotBefore.Format(time.DateTime), leaf.NotAfter.Format(time.DateTime), leaf.DNSNames, leaf.IPAddresses)
	return nil
}

// printWebhookCA shows where the API server calls the webhook and which CA
// the operator put in its caBundle.
func printWebhookCA(ctx context.Context, c client.Client) error {
	config := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, config); err != nil {
		return err
	}
	for _, w := range config.Webhooks {
		ca, err := certutil.ParseCertsPEM(w.ClientConfig.CABundle)
		if err != nil {
			return fmt.Errorf("webhook %s: caBundle: %w", w.Name, err)
		}
		fmt.Printf("  mutatingwebhookconfiguration %s: webhook %s at %s, caBundle %q (the operator's CA), failurePolicy %s\n",
			config.Name, w.Name, *w.ClientConfig.URL, ca[0].Subject.CommonName, *w.FailurePolicy)
	}
	return nil
}

// printCoverage measures the requests of the demo (kubectl's, the manager's
// and the demo's own) against Kubernetes 1.37, as `kubectl-snoop coverage
// --audit-log` does.
func printCoverage(auditLog string) error {
	cat, err := catalog.Load("1.37")
	if err != nil {
		return err
	}
	f, err := os.Open(auditLog)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	defer f.Close()
	var delta coverage.Delta
	if _, err := audit.Analyze(f, match.New(cat), &delta, nil, nil); err != nil {
		return err
	}
	return report.Table(os.Stdout, coverage.NewReport(cat, &delta), report.Options{MaxRows: 12})
}

const invalidSession = `apiVersion: snoop.apisnoop.dev/v1alpha1
kind: SnoopSession
metadata:
  name: invalid
  namespace: default
spec:
  kubernetesRelease: "1.20"
  duration: 1h
  stopAt: "2030-01-01T00:00:00Z"
`

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

// runShown runs a command with its output shown, adding env to the
// environment.
func runShown(ctx context.Context, env []string, name string, args ...string) error {
	shown := filepath.Base(name) + " " + strings.Join(args, " ")
	fmt.Printf("$ %s\n", shown)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", shown, err)
	}
	return nil
}

// writeHTMLReport writes the demo session's HTML report to path (kept
// after the demo, unlike its work directory) and says where it is.
func writeHTMLReport(ctx context.Context, kubeconfig, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Printf("$ kubectl-snoop report demo -o html > %s\n", path)
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "bin", "kubectl-snoop"), "report", "demo", "-o", "html")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = f, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl-snoop report -o html: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		return err
	}
	fmt.Printf("  %s, %d bytes: open it in a browser, no network needed\n", path, info.Size())
	return f.Close()
}

// poll checks done every interval until it holds, for at most timeout;
// what names the wait in the error.
func poll(ctx context.Context, timeout, interval time.Duration, what string, done func(context.Context) bool) error {
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) { return done(ctx), nil })
	if err != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	return nil
}

// session reads the demo's session; nil when it cannot.
func session(ctx context.Context, c client.Client, key client.ObjectKey) *snoopv1alpha1.SnoopSession {
	s := &snoopv1alpha1.SnoopSession{}
	if c.Get(ctx, key, s) != nil {
		return nil
	}
	return s
}

// waitForSecret waits until the operator has stored a Secret.
func waitForSecret(ctx context.Context, c client.Client, key client.ObjectKey) error {
	return poll(ctx, time.Minute, 200*time.Millisecond, "Secret "+key.String(), func(ctx context.Context) bool {
		return c.Get(ctx, key, &corev1.Secret{}) == nil
	})
}

// waitForStatus waits until the manager has reconciled the session once.
func waitForStatus(ctx context.Context, c client.Client, key client.ObjectKey) error {
	return poll(ctx, 30*time.Second, 100*time.Millisecond, "the status of SnoopSession "+key.String(), func(ctx context.Context) bool {
		s := session(ctx, c, key)
		return s != nil && s.Status.ObservedGeneration == s.Generation && s.Status.Pods.Matched > 0
	})
}

// waitForInjected waits until the session counts an injected pod.
func waitForInjected(ctx context.Context, c client.Client, key client.ObjectKey) error {
	return poll(ctx, 30*time.Second, 100*time.Millisecond, "SnoopSession "+key.String()+" to count an injected pod", func(ctx context.Context) bool {
		s := session(ctx, c, key)
		return s != nil && s.Status.Pods.Injected > 0
	})
}

// waitForRequests waits until the session's status counts recorded
// requests and the count held for one look, so that the last batch is in.
func waitForRequests(ctx context.Context, c client.Client, key client.ObjectKey) error {
	var last int64 = -1
	return poll(ctx, 30*time.Second, 2*time.Second, "SnoopSession "+key.String()+" to count requests", func(ctx context.Context) bool {
		s := session(ctx, c, key)
		if s == nil {
			return false
		}
		settled := s.Status.Requests > 0 && s.Status.Requests == last
		last = s.Status.Requests
		return settled
	})
}
