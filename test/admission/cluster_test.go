package admission_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/testoperator"
)

const (
	sidecarImage = "apisnoop:bench"
	// setupTimeout bounds each wait of the setup: the manager's CA and
	// webhook certificate, a session becoming Ready, trust objects.
	setupTimeout = 60 * time.Second
)

// cluster is one control plane with the whole operator running against it,
// as internal/manager's suite wires it: the manager as its service account
// with the generated RBAC, serving the pod webhook on loopback, and the
// MutatingWebhookConfiguration config/default renders pointed there.
type cluster struct {
	cp     *testenv.ControlPlane
	client client.Client // cp's, uncached, as the benchmark's own identity
	stop   func() error  // stops the manager, then the control plane
}

// startCluster starts the control plane and the manager, and returns once
// the operator has put its CA into the webhook configuration.
func startCluster(ctx context.Context) (_ *cluster, err error) {
	cp, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	c := &cluster{cp: cp, client: cp.Client, stop: cp.Stop}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.stop())
		}
	}()
	operator, err := testoperator.Install(ctx, cp.Config, c.client, sidecarImage)
	if err != nil {
		return nil, err
	}
	stopManager, err := operator.Start(context.Background(), ctrl.Options{})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	c.stop = func() error { return errors.Join(stopManager(), cp.Stop()) }

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

// targetNamespace makes a namespace as a cluster would have it, with the
// kube-root-ca.crt the kube-controller-manager publishes (envtest runs
// none), and in it a session selecting pods labelled selects, once Ready.
func (c *cluster) targetNamespace(ctx context.Context, prefix string, labels, selects map[string]string) (string, error) {
	ns, err := c.cp.Namespace(ctx, prefix, labels)
	if err != nil {
		return "", err
	}
	if err := testenv.PublishRootCA(ctx, c.client, ns, c.cp.Config.CAData); err != nil {
		return "", err
	}
	s := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: "session", Namespace: ns},
		Spec: snoopv1alpha1.SnoopSessionSpec{
			KubernetesRelease: "1.37",
			Targets:           snoopv1alpha1.Targets{PodSelector: &metav1.LabelSelector{MatchLabels: selects}},
		},
	}
	if err := c.client.Create(ctx, s); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, setupTimeout, true, func(ctx context.Context) (bool, error) {
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionReady), nil
	})
	if err != nil {
		return "", fmt.Errorf("wait for session %s/%s to be Ready: %w", ns, s.Name, err)
	}
	return ns, nil
}
