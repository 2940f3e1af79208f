// Package auditsink checks the manager's audit sink against a real API
// server: its audit webhook backend, wired with the kubeconfig
// `kubectl snoop audit-kubeconfig` prints, feeds a SnoopSession with
// spec.source: audit, whose coverage must equal, request for request, what
// `kubectl snoop coverage` reads from the same API server's audit log; and
// a burst of audit batches, stages repeated and reordered, batches retried
// and refused for being too many at once, counts every request once. The
// audit policy logs one namespace's requests with their bodies, so the two
// must agree on field coverage too.
package auditsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
)

// bodiesNamespace is the namespace whose requests the audit policy logs
// at RequestResponse level, so that their events carry requestObject.
const bodiesNamespace = "audit-bodies"

// auditPolicy is testenv's Metadata policy with bodies for
// bodiesNamespace.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  namespaces: ["` + bodiesNamespace + `"]
- level: Metadata
`

// fixture is a control plane whose API server sends its audit events to a
// running manager.
type fixture struct {
	cp         *testenv.ControlPlane
	op         *testoperator.Operator
	snoop      string // kubectl-snoop binary
	kubectl    string
	dir        string
	sinkURL    string
	caBundle   []byte
	sinkToken  string
	clientset  *kubernetes.Clientset
	sessionsNS string
	// elsewhereNS is a namespace where the manager takes no audit session.
	elsewhereNS string
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx := t.Context()
	f := &fixture{dir: t.TempDir()}
	// The API server restarts once, with the webhook kubeconfig: its
	// certificates and service account keys must stay, so they live in a
	// directory of the test's (envtest removes one of its own at stop).
	restartable := func(cp *testenv.ControlPlane) error {
		apiServer := cp.Env.ControlPlane.GetAPIServer()
		apiServer.CertDir = filepath.Join(f.dir, "apiserver")
		return os.Mkdir(apiServer.CertDir, 0o700)
	}
	f.cp = testenv.StartForTest(t, testenv.WithAuditPolicy(auditPolicy), restartable)
	var err error
	if f.kubectl, err = testenv.Kubectl("kubectl"); err != nil {
		t.Fatal(err)
	}
	f.snoop = filepath.Join(f.dir, "kubectl-snoop")
	build := exec.Command("go", "build", "-o", f.snoop, "./cmd/kubectl-snoop")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kubectl-snoop: %v\n%s", err, out)
	}
	if f.clientset, err = kubernetes.NewForConfig(f.cp.Config); err != nil {
		t.Fatal(err)
	}

	f.op, err = testoperator.Install(ctx, f.cp.Config, f.cp.Client, "apisnoop:test")
	if err != nil {
		t.Fatal(err)
	}
	installAuditWriter(t, f.cp.Client, f.op.Namespace)
	stopManager := f.startManager(t)
	f.sinkURL = fmt.Sprintf("https://127.0.0.1:%d%s", f.op.WebhookPort, collector.AuditPath)

	// The manager fills the webhook configuration's caBundle with the CA
	// of its serving certificate; that is what the API server must trust.
	poll(t, time.Minute, func() (bool, error) {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := f.cp.Client.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, mwc); err != nil {
			return false, err
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) > 0 {
				f.caBundle = w.ClientConfig.CABundle
				return true, nil
			}
		}
		return false, nil
	})

	// What a cluster admin does: print the webhook kubeconfig, then
	// restart the API server with it.
	webhookConfig := filepath.Join(f.dir, "audit-webhook.kubeconfig")
	out := f.run(t, f.snoop, "audit-kubeconfig", "--kubeconfig", f.cp.Kubeconfig, "--server", f.sinkURL, "--duration", "1h")
	if err := os.WriteFile(webhookConfig, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	// The manager goes first: the API server drains open watches slowly.
	stopManager()
	apiServer := f.cp.Env.ControlPlane.GetAPIServer()
	stopping := time.Now()
	if err := apiServer.Stop(); err != nil {
		t.Fatal(err)
	}
	apiServer.Configure().
		Set("audit-webhook-config-file", webhookConfig).
		Set("audit-webhook-mode", "batch").
		Set("audit-webhook-batch-max-wait", "1s").
		Set("audit-webhook-initial-backoff", "1s")
	if err := apiServer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server restarted with the audit webhook in %s", time.Since(stopping).Round(time.Millisecond))
	f.startManager(t)
	f.sinkToken = token(t, f.clientset, f.op.Namespace, "apisnoop-audit-writer")
	// The manager takes audit sessions in its own namespace only, as it is
	// installed by default; testMatchesAuditLog checks one elsewhere.
	f.sessionsNS = f.op.Namespace
	f.elsewhereNS, err = f.cp.Namespace(ctx, "audit-elsewhere", nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startManager runs the operator's manager; the returned function (also
// called when the test ends) stops it.
func (f *fixture) startManager(t *testing.T) func() {
	t.Helper()
	stop, err := f.op.Start(t.Context(), ctrl.Options{Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stopOnce := func() {
		once.Do(func() {
			if err := stop(); err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
	t.Cleanup(stopOnce)
	return stopOnce
}

func TestAuditSink(t *testing.T) {
	f := setUp(t)
	t.Run("a session of the audit stream equals kubectl snoop coverage of the audit log", f.testMatchesAuditLog)
	t.Run("a burst of repeated and reordered stages counts every request once", f.testBurst)
}

func (f *fixture) testMatchesAuditLog(t *testing.T) {
	ctx := t.Context()
	const user = "audit-alice"
	session := f.createSession(t, "alice", &snoopv1alpha1.AuditFilter{Users: []string{user}})
	// The same session in a namespace whose users may not see the cluster's
	// audit stream: stopped, and given nothing.
	elsewhere := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: f.elsewhereNS},
		Spec:       *session.Spec.DeepCopy(),
	}
	if err := f.cp.Client.Create(ctx, elsewhere); err != nil {
		t.Fatal(err)
	}

	alice, err := f.cp.Env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := alice.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	aliceConfig := filepath.Join(f.dir, "alice.kubeconfig")
	if err := os.WriteFile(aliceConfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := bodiesNamespace
	if err := f.cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(f.dir, "configmap.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations:\n    note: applied\nbinaryData:\n  bin: eA==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := func(args ...string) {
		f.run(t, f.kubectl, append([]string{"--kubeconfig", aliceConfig, "--cache-dir", filepath.Join(f.dir, "kube-cache"), "-n", ns}, args...)...)
	}
	k("get", "pods")
	k("create", "configmap", "a", "--from-literal=k=v")
	k("get", "configmap", "a", "-o", "yaml")
	k("label", "configmap", "a", "x=y")
	k("patch", "configmap", "a", "--type=merge", "-p", `{"data":{"k2":"w"}}`)
	k("patch", "configmap", "a", "--type=json", "-p", `[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]`)
	k("apply", "--server-side", "-f", manifest)
	k("delete", "configmap", "a", "--wait=false")
	k("get", "configmaps", "does-not-exist", "--ignore-not-found")
	k("get", "namespaces")
	k("auth", "can-i", "list", "pods")

	// The audit log (blocking mode) holds every request once kubectl has
	// its answer; the webhook's batches follow within a second or so.
	var want, got coverage.Report
	poll(t, time.Minute, func() (bool, error) {
		want = coverage.Report{}
		if err := json.Unmarshal([]byte(f.run(t, f.snoop, "coverage", "--audit-log", f.cp.AuditLog, "--user", user, "-o", "json")), &want); err != nil {
			return false, err
		}
		s := &snoopv1alpha1.SnoopSession{}
		if err := f.cp.Client.Get(ctx, client.ObjectKeyFromObject(session), s); err != nil {
			return false, err
		}
		return s.Status.Requests == want.Summary.Requests, nil
	})
	if err := json.Unmarshal([]byte(f.run(t, f.snoop, "report", session.Name, "-n", session.Namespace, "--kubeconfig", f.cp.Kubeconfig, "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if want.Summary.Requests < 8 {
		t.Fatalf("the audit log holds %d requests of %s, want at least the 8 kubectl calls", want.Summary.Requests, user)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubectl snoop coverage of the audit log (-) and the audit session's report (+) differ:\n%s", diff)
	}
	// The bodies were read: what kubectl sent shows in both.
	paths := map[string][]string{}
	hit, bodies := 0, int64(0)
	for _, op := range want.Operations {
		if op.Hits > 0 {
			hit++
		}
		if op.Fields != nil {
			bodies += op.Fields.Bodies
			for _, h := range op.Fields.Set {
				paths[op.ID] = append(paths[op.ID], h.Path)
			}
		}
	}
	for id, path := range map[string]string{
		"createCoreV1NamespacedConfigMap": "data{}",
		"patchCoreV1NamespacedConfigMap":  "metadata.labels{}",
	} {
		if !slices.Contains(paths[id], path) {
			t.Errorf("%s: set paths %v, want %s among them", id, paths[id], path)
		}
	}
	for _, path := range []string{"binaryData{}", "metadata.annotations{}"} {
		if !slices.Contains(paths["patchCoreV1NamespacedConfigMap"], path) {
			t.Errorf("patchCoreV1NamespacedConfigMap: set paths %v, want %s among them", paths["patchCoreV1NamespacedConfigMap"], path)
		}
	}
	if want.Summary.Fields == nil {
		t.Error("the report has no field summary")
	}
	if err := f.cp.Client.Get(ctx, client.ObjectKeyFromObject(elsewhere), elsewhere); err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(elsewhere.Status.Conditions, snoopv1alpha1.ConditionReady)
	if ready == nil || ready.Reason != snoopv1alpha1.ReasonAuditSourceNotAllowed || elsewhere.Status.Requests != 0 {
		t.Errorf("the session in %s: Ready %+v, %d requests; want AuditSourceNotAllowed and none", f.elsewhereNS, ready, elsewhere.Status.Requests)
	}
	t.Logf("%d requests of %s, %d operations hit, %d bodies read, equal in the audit log and the session", want.Summary.Requests, user, hit, bodies)
}

// burstUserAgent marks the burst's events, so that only the burst session
// counts them.
const burstUserAgent = "audit-burst/1.0"

func (f *fixture) testBurst(t *testing.T) {
	ctx := t.Context()
	session := f.createSession(t, "burst", &snoopv1alpha1.AuditFilter{UserAgents: []string{"audit-burst/"}})

	// requests distinct requests, each logged at ResponseComplete, some
	// also at RequestReceived or ResponseStarted, in any order; every
	// fifth batch is sent twice, as a retried batch is.
	const requests = 70_000
	var events []json.RawMessage
	for i := range requests {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		uri := fmt.Sprintf("/api/v1/namespaces/ns-%d/configmaps/cm-%d", i%50, i)
		ev := func(stage string) json.RawMessage {
			return json.RawMessage(fmt.Sprintf(`{"level":"Metadata","auditID":%q,"stage":%q,"requestURI":%q,"verb":"get","user":{"username":"burst"},"userAgent":%q,"objectRef":{"resource":"configmaps","namespace":"ns-%d","name":"cm-%d","apiVersion":"v1"},"responseStatus":{"code":200}}`,
				id, stage, uri, burstUserAgent, i%50, i))
		}
		switch {
		case i%10 == 0:
			events = append(events, ev("RequestReceived"), ev("ResponseComplete"))
		case i%5 == 1:
			events = append(events, ev("ResponseComplete"), ev("ResponseStarted")) // reordered
		default:
			events = append(events, ev("ResponseComplete"))
		}
	}
	const batchSize = 400
	var batches [][]byte
	for start := 0; start < len(events); start += batchSize {
		end := min(start+batchSize, len(events))
		var b bytes.Buffer
		b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
		for i, e := range events[start:end] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(e)
		}
		b.WriteString("]}")
		batches = append(batches, b.Bytes())
		if len(batches)%5 == 0 {
			batches = append(batches, b.Bytes())
		}
	}
	sent := 0
	for _, b := range batches {
		sent += bytes.Count(b, []byte(`"auditID"`))
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.caBundle)
	httpClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	var throttled, accepted atomic.Int64
	var peak atomic.Uint64
	work := make(chan []byte)
	var wg sync.WaitGroup
	start := time.Now()
	errs := make(chan error, 100)
	for range 100 { // more senders than the sink takes at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := f.post(ctx, httpClient, b, &throttled); err != nil {
					errs <- err
					return
				}
				accepted.Add(1)
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				for p := peak.Load(); m.HeapInuse > p && !peak.CompareAndSwap(p, m.HeapInuse); p = peak.Load() {
				}
			}
		}()
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)

	var s snoopv1alpha1.SnoopSession
	poll(t, time.Minute, func() (bool, error) {
		if err := f.cp.Client.Get(ctx, client.ObjectKeyFromObject(session), &s); err != nil {
			return false, err
		}
		return s.Status.Requests >= requests, nil
	})
	// Nothing more arrives later: every batch was answered only once
	// persisted.
	if s.Status.Requests != requests {
		t.Errorf("the session counted %d requests, want %d", s.Status.Requests, requests)
	}
	if s.Status.UnknownRequests != 0 || s.Status.FailedRequests != 0 {
		t.Errorf("unknown %d, failed %d, want none", s.Status.UnknownRequests, s.Status.FailedRequests)
	}
	const heapBound = 256 << 20
	growth := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("burst: %d events (%d requests) in %d batches (%d accepted, %d answered 429 and retried) in %s, %.0f events/s; heap in use %.1f MiB before, peak %.1f MiB",
		sent, requests, len(batches), accepted.Load(), throttled.Load(), elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(),
		float64(before.HeapInuse)/(1<<20), float64(peak.Load())/(1<<20))
	if growth > heapBound {
		t.Errorf("the heap grew by %d MiB during the burst, want under %d MiB", growth>>20, heapBound>>20)
	}
	if sent < 100_000 {
		t.Fatalf("the burst sent %d events, want at least 100,000", sent)
	}
}

// post sends one batch, retrying while the sink says 429 or 503, as the
// API server's webhook backend does.
func (f *fixture) post(ctx context.Context, c *http.Client, batch []byte, throttled *atomic.Int64) error {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sinkURL, bytes.NewReader(batch))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+f.sinkToken)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < 200:
			if resp.StatusCode == http.StatusTooManyRequests {
				throttled.Add(1)
			}
			if resp.Header.Get("Retry-After") == "" {
				return fmt.Errorf("%d without Retry-After", resp.StatusCode)
			}
			time.Sleep(50 * time.Millisecond) // shorter than Retry-After, to press harder
		default:
			return fmt.Errorf("batch answered %d: %s", resp.StatusCode, body)
		}
	}
}

func (f *fixture) createSession(t *testing.T, name string, filter *snoopv1alpha1.AuditFilter) *snoopv1alpha1.SnoopSession {
	t.Helper()
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.sessionsNS},
		Spec: snoopv1alpha1.SnoopSessionSpec{
			KubernetesRelease: "1.37",
			Source:            snoopv1alpha1.SourceAudit,
			Audit:             filter,
		},
	}
	if err := f.cp.Client.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	// The sink takes a session's requests once it is Ready and its
	// results are loaded; a batch before that is answered 503 and retried.
	poll(t, time.Minute, func() (bool, error) {
		if err := f.cp.Client.Get(t.Context(), client.ObjectKeyFromObject(s), s); err != nil {
			return false, err
		}
		for _, c := range s.Status.Conditions {
			if c.Type == snoopv1alpha1.ConditionRecording && c.Status == metav1.ConditionTrue && c.Reason == snoopv1alpha1.ReasonAuditStream {
				return true, nil
			}
		}
		return false, nil
	})
	return s
}

func (f *fixture) run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+f.cp.Kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// installAuditWriter makes config/rbac/audit_writer.yaml's service account
// and role, as config/default names them.
func installAuditWriter(t *testing.T, c client.Client, namespace string) {
	t.Helper()
	ctx := t.Context()
	const name = "apisnoop-audit-writer"
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{snoopv1alpha1.GroupVersion.Group}, Resources: []string{"auditevents"}, Verbs: []string{"create"},
		}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}}},
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
}

func token(t *testing.T, c kubernetes.Interface, namespace, serviceAccount string) string {
	t.Helper()
	var tok string
	poll(t, time.Minute, func() (bool, error) {
		tr, err := c.CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), serviceAccount, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			return false, nil // the API server is still starting
		}
		tok = tr.Status.Token
		return true, nil
	})
	return tok
}

func poll(t *testing.T, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("gave up after %s: %v (last error: %v)", timeout, err, last)
	}
}
