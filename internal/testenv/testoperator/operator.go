// Package operator installs and runs the whole operator on a control plane
// of the tests' or the demo's own, as config/ deploys it. It is apart from
// testenv because it imports the manager, which the controllers' own tests
// (which use testenv) must not.
package testoperator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// Operator is the operator installed on a control plane as config/ deploys
// it, as far as a control plane without nodes allows: its namespace and
// service account, exactly the generated RBAC, and the webhook
// configuration config/default renders, pointed at a manager on loopback.
// Start runs the real manager (manager.New) as that service account.
type Operator struct {
	Namespace      string
	ServiceAccount string
	// WebhookPort is where the manager serves the pod webhook on 127.0.0.1.
	WebhookPort  int
	SidecarImage string
	// WebhookCertDir, when set, is the manager's --webhook-cert-dir: it
	// serves the pair there, as with cert-manager.
	WebhookCertDir string
	// CatalogCheck is the manager's --catalog-check-interval (zero: its
	// default).
	CatalogCheck time.Duration

	cfg *rest.Config
}

// Install installs the operator in namespace apisnoop-system with
// admin, a client with every right.
func Install(ctx context.Context, cfg *rest.Config, admin client.Client, sidecarImage string) (*Operator, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	o := &Operator{Namespace: "apisnoop-system", ServiceAccount: "apisnoop-controller-manager", WebhookPort: port, SidecarImage: sidecarImage, cfg: cfg}
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}); err != nil {
		return nil, fmt.Errorf("create operator namespace: %w", err)
	}
	if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: o.ServiceAccount, Namespace: o.Namespace}}); err != nil {
		return nil, fmt.Errorf("create operator service account: %w", err)
	}
	if err := o.applyGeneratedRBAC(ctx, admin); err != nil {
		return nil, err
	}
	if _, err := testenv.InstallWebhookConfiguration(ctx, admin, fmt.Sprintf("https://127.0.0.1:%d", port)); err != nil {
		return nil, err
	}
	return o, nil
}

// User is the operator's user name, as the API server knows it.
func (o *Operator) User() string {
	return "system:serviceaccount:" + o.Namespace + ":" + o.ServiceAccount
}

// Start runs the manager until ctx ends or stop is called; stop waits for it
// and returns what its Start returned. opts may set more options (metrics
// and probes are off unless set).
func (o *Operator) Start(ctx context.Context, opts ctrl.Options) (stop func() error, err error) {
	asOperator := rest.CopyConfig(o.cfg)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: o.User(),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + o.Namespace, "system:authenticated"}}
	if opts.Metrics.BindAddress == "" {
		opts.Metrics = metricsserver.Options{BindAddress: "0"}
	}
	if opts.HealthProbeBindAddress == "" {
		opts.HealthProbeBindAddress = "0"
	}
	mgr, err := manager.New(asOperator, manager.Config{Namespace: o.Namespace, CatalogCheck: o.CatalogCheck, Webhook: manager.WebhookConfig{
		Host: "127.0.0.1", Port: o.WebhookPort, ExtraNames: []string{"127.0.0.1"}, SidecarImage: o.SidecarImage, CertDir: o.WebhookCertDir,
		CollectorURL: fmt.Sprintf("https://127.0.0.1:%d%s", o.WebhookPort, intake.Path),
	}}, opts)
	if err != nil {
		return nil, err
	}
	mgrCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	return func() error { cancel(); return <-done }, nil
}

// applyGeneratedRBAC creates config/rbac/role.yaml's roles and binds them to
// the operator's service account, as config/rbac/role_binding.yaml does.
func (o *Operator) applyGeneratedRBAC(ctx context.Context, admin client.Client) error {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		return fmt.Errorf("read generated RBAC: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: o.ServiceAccount, Namespace: o.Namespace}}
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("decode generated RBAC: %w", err)
		}
		if obj.GetNamespace() != "" {
			obj.SetNamespace(o.Namespace)
		}
		if err := admin.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: obj.GetKind(), Name: obj.GetName()}
		meta := metav1.ObjectMeta{Name: "apisnoop-" + obj.GetName(), Namespace: obj.GetNamespace()}
		var binding client.Object = &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subject}
		if obj.GetKind() == "ClusterRole" {
			binding = &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subject}
		}
		if err := admin.Create(ctx, binding); err != nil {
			return fmt.Errorf("bind %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
}
