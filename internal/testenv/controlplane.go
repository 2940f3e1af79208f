package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"apisnoop.dev/kube-apisnoop/internal/scheme"
)

// ControlPlane is a running kube-apiserver and etcd with what every envtest
// package asks of one: an uncached client, and an admin kubeconfig for the
// tools (kubectl, kubectl-snoop) that tests run against it.
type ControlPlane struct {
	Env *envtest.Environment
	// Config authenticates as envtest's admin, a system:masters user with
	// a client certificate.
	Config *rest.Config
	// Client is uncached, with the project's scheme: a test reads what
	// the API server has, not what an informer has seen so far.
	Client client.Client
	// Kubeconfig is the path of a kubeconfig file for Config's admin.
	Kubeconfig string
	// AuditLog is the path of the API server's audit log, with
	// WithAuditLog only.
	AuditLog string

	// dir holds the files of this control plane (kubeconfig, audit log
	// and policy); Stop removes it.
	dir string
}

// Option changes the environment before the control plane starts.
type Option func(*ControlPlane) error

// WithoutCRDs starts the API server without the project's CRDs, for tests
// that apply rendered manifests, CRDs included, onto an API server that has
// never seen them.
func WithoutCRDs() Option {
	return func(cp *ControlPlane) error {
		cp.Env.CRDDirectoryPaths = nil
		cp.Env.ErrorIfCRDPathMissing = false
		return nil
	}
}

// WithWebhooks installs the webhook configurations in paths, which envtest
// points at a local serving address (Env.WebhookInstallOptions says where,
// and with which certificates) for the test's own webhook server.
func WithWebhooks(paths ...string) Option {
	return func(cp *ControlPlane) error {
		cp.Env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: paths}
		return nil
	}
}

// metadataAuditPolicy logs every request at Metadata level (no bodies), at
// the stages the offline analysis reads.
const metadataAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// WithAuditLog makes the API server write a JSON audit log of every
// request, at Metadata level, to the file AuditLog names.
func WithAuditLog() Option { return WithAuditPolicy(metadataAuditPolicy) }

// WaitForAuditLog waits until the audit log stops growing: the API server
// writes it in blocking mode, so every answered request is in it, but a
// client's last requests (kubectl's discovery) may still be landing.
func (cp *ControlPlane) WaitForAuditLog(t testing.TB) {
	t.Helper()
	var last int64 = -1
	for range 50 {
		info, err := os.Stat(cp.AuditLog)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() == last {
			return
		}
		last = info.Size()
		time.Sleep(200 * time.Millisecond)
	}
}

// WithAuditPolicy is WithAuditLog with an audit policy of the test's own,
// for tests that need bodies (Request or RequestResponse level).
func WithAuditPolicy(auditPolicy string) Option {
	return func(cp *ControlPlane) error {
		policy := filepath.Join(cp.dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return fmt.Errorf("write audit policy: %w", err)
		}
		cp.AuditLog = filepath.Join(cp.dir, "audit.log")
		args := cp.Env.ControlPlane.GetAPIServer().Configure()
		args.Set("audit-policy-file", policy)
		args.Set("audit-log-path", cp.AuditLog)
		args.Set("audit-log-format", "json")
		// Blocking: every request is in the log once its response is
		// sent.
		args.Set("audit-log-mode", "blocking")
		return nil
	}
}

// WithAPIServerFlag sets a kube-apiserver flag, such as token-auth-file.
func WithAPIServerFlag(name, value string) Option {
	return func(cp *ControlPlane) error {
		cp.Env.ControlPlane.GetAPIServer().Configure().Set(name, value)
		return nil
	}
}

// Start starts a control plane with the project's CRDs, changed by opts.
// Missing binaries are an error, never a reason to skip: a suite that does
// not run must not pass.
func Start(opts ...Option) (_ *ControlPlane, err error) {
	binaries, err := BinaryDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "apisnoop-testenv-")
	if err != nil {
		return nil, fmt.Errorf("create control plane dir: %w", err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: binaries,
	}
	cp := &ControlPlane{Env: env, dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
		}
	}()
	for _, opt := range opts {
		if err := opt(cp); err != nil {
			return nil, err
		}
	}
	if cp.Config, err = env.Start(); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	if cp.Client, err = client.New(cp.Config, client.Options{Scheme: scheme.New()}); err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	// envtest's admin as a file, for the tools that read one.
	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		return nil, fmt.Errorf("write admin kubeconfig: %w", err)
	}
	return cp, nil
}

// Stop stops the API server and etcd, and removes the control plane's
// files.
func (cp *ControlPlane) Stop() error {
	return errors.Join(cp.Env.Stop(), os.RemoveAll(cp.dir))
}

// Namespace creates a namespace named prefix-<random suffix>, with labels,
// so that each test has its own however many ran before it.
func (cp *ControlPlane) Namespace(ctx context.Context, prefix string, labels map[string]string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := cp.Client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("create namespace %s-*: %w", prefix, err)
	}
	return ns.Name, nil
}

// StartForTest starts a control plane for t alone and stops it when t
// ends; failing to start fails t.
func StartForTest(t testing.TB, opts ...Option) *ControlPlane {
	t.Helper()
	cp, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

// Shared is the one control plane of a package of plain tests. The first
// test that asks for it starts it, so that tests of pure logic do not wait
// for a control plane, and Main stops it after the last test. The zero
// value starts a control plane with the project's CRDs.
type Shared struct {
	Options []Option

	once sync.Once
	cp   *ControlPlane
	err  error
}

// Get returns the running control plane, starting it on first use; if it
// could not start, t fails (again in each test that asks).
func (s *Shared) Get(t testing.TB) *ControlPlane {
	t.Helper()
	s.once.Do(func() { s.cp, s.err = Start(s.Options...) })
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.cp
}

// Main runs the package's tests and stops the control plane if one
// started; call it from TestMain. Failing to stop fails the run, so that
// a leaked API server or etcd does not go unnoticed.
func (s *Shared) Main(m *testing.M) {
	code := m.Run()
	if s.cp != nil {
		if err := s.cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}
