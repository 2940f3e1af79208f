package admission_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/scheme"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

const (
	sidecarImage   = "apisnoop:bench"
	operatorNS     = "apisnoop-system" // the name config/default gives it
	serviceAccount = "apisnoop-controller-manager"
	operatorUser   = "system:serviceaccount:" + operatorNS + ":" + serviceAccount
	// setupTimeout bounds each wait of the setup: the manager's CA and
	// webhook certificate, a session becoming Ready, trust objects.
	setupTimeout = 60 * time.Second
)

// cluster is one control plane with the whole operator running against it,
// as internal/manager's suite wires it: the manager as its service account
// with the generated RBAC, serving the pod webhook on loopback, and the
// MutatingWebhookConfiguration config/default renders pointed there.
type cluster struct {
	env    *envtest.Environment
	cfg    *rest.Config
	client client.Client // uncached, as the benchmark's own identity
	stop   func() error  // stops the manager, then the control plane
}

// startCluster starts the control plane and the manager, and returns once
// the operator has put its CA into the webhook configuration.
func startCluster(ctx context.Context) (_ *cluster, err error) {
	env, err := testenv.New()
	if err != nil {
		return nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	c := &cluster{env: env, cfg: cfg, stop: env.Stop}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	if c.client, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	if err := c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		return nil, fmt.Errorf("create operator namespace: %w", err)
	}
	if err := c.client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: operatorNS}}); err != nil {
		return nil, fmt.Errorf("create service account: %w", err)
	}
	if err := c.applyGeneratedRBAC(ctx); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := c.installWebhookConfiguration(ctx, port); err != nil {
		return nil, err
	}

	asOperator := rest.CopyConfig(cfg)
	asOperator.Impersonate = rest.ImpersonationConfig{UserName: operatorUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNS, "system:authenticated"}}
	mgr, err := manager.New(asOperator, manager.Config{Namespace: operatorNS, Webhook: manager.WebhookConfig{
		Host: "127.0.0.1", Port: port, ExtraNames: []string{"127.0.0.1"}, SidecarImage: sidecarImage,
	}}, ctrl.Options{Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	c.stop = func() error {
		stopMgr()
		return errors.Join(<-done, env.Stop())
	}

	// The API server calls the webhook once the operator has written its
	// CA into the configuration's caBundle.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, setupTimeout, true, func(ctx context.Context) (bool, error) {
		config := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.client.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfiguration}, config); err != nil {
			return false, err
		}
		for _, w := range config.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return len(config.Webhooks) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the webhook's caBundle: %w", err)
	}
	return c, nil
}

// applyGeneratedRBAC creates config/rbac/role.yaml's roles and binds them to
// the operator's service account, as config/rbac/role_binding.yaml does.
func (c *cluster) applyGeneratedRBAC(ctx context.Context) error {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		return fmt.Errorf("read generated RBAC: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: operatorNS}}
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("decode generated RBAC: %w", err)
		}
		if obj.GetNamespace() != "" {
			obj.SetNamespace(operatorNS)
		}
		if err := c.client.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: obj.GetKind(), Name: obj.GetName()}
		meta := metav1.ObjectMeta{Name: "apisnoop-" + obj.GetName(), Namespace: obj.GetNamespace()}
		var binding client.Object = &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subject}
		if obj.GetKind() == "ClusterRole" {
			binding = &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subject}
		}
		if err := c.client.Create(ctx, binding); err != nil {
			return fmt.Errorf("bind %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// installWebhookConfiguration creates the MutatingWebhookConfiguration that
// config/default renders, selectors and all, pointed at the manager on
// loopback instead of its Service (envtest routes no Services).
func (c *cluster) installWebhookConfiguration(ctx context.Context, port int) error {
	objs, err := testenv.RenderConfig("config/default")
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if obj.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		config := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, config); err != nil {
			return fmt.Errorf("convert webhook configuration: %w", err)
		}
		for i := range config.Webhooks {
			cc := &config.Webhooks[i].ClientConfig
			if cc.Service == nil || cc.Service.Path == nil {
				return fmt.Errorf("webhook %s has no service path", config.Webhooks[i].Name)
			}
			url := fmt.Sprintf("https://127.0.0.1:%d%s", port, *cc.Service.Path)
			cc.Service, cc.URL = nil, &url
		}
		if err := c.client.Create(ctx, config); err != nil {
			return fmt.Errorf("create webhook configuration: %w", err)
		}
		return nil
	}
	return errors.New("config/default renders no MutatingWebhookConfiguration")
}

// targetNamespace makes a namespace as a cluster would have it, with the
// kube-root-ca.crt the kube-controller-manager publishes (envtest runs
// none), and in it a session selecting pods labelled selects, once Ready.
func (c *cluster) targetNamespace(ctx context.Context, prefix string, labels, selects map[string]string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := c.client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("create namespace: %w", err)
	}
	if err := c.client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: ns.Name},
		Data:       map[string]string{"ca.crt": string(c.cfg.CAData)},
	}); err != nil {
		return "", fmt.Errorf("create kube-root-ca.crt: %w", err)
	}
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "session", Namespace: ns.Name},
		Spec: snoopv1alpha1.SnoopSessionSpec{
			KubernetesRelease: "1.37",
			Targets:           snoopv1alpha1.Targets{PodSelector: &metav1.LabelSelector{MatchLabels: selects}},
		},
	}
	if err := c.client.Create(ctx, s); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, setupTimeout, true, func(ctx context.Context) (bool, error) {
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionReady), nil
	})
	if err != nil {
		return "", fmt.Errorf("wait for session %s/%s to be Ready: %w", ns.Name, s.Name, err)
	}
	return ns.Name, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
