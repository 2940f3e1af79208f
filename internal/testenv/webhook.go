package testenv

import (
	"context"
	"errors"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// InstallWebhookConfiguration creates the MutatingWebhookConfiguration that
// config/default renders, calling the manager at baseURL (such as
// https://127.0.0.1:9443) instead of its Service: envtest has no Service
// routing, and a manager run outside the cluster is reached that way. The
// caBundle stays empty, for the operator to fill. It returns the
// configuration as created.
func InstallWebhookConfiguration(ctx context.Context, c client.Client, baseURL string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	objs, err := RenderConfig("config/default")
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if obj.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		config := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, config); err != nil {
			return nil, fmt.Errorf("decode webhook configuration: %w", err)
		}
		for i := range config.Webhooks {
			cc := &config.Webhooks[i].ClientConfig
			if cc.Service == nil || cc.Service.Path == nil {
				return nil, fmt.Errorf("webhook %s calls no service path", config.Webhooks[i].Name)
			}
			url := baseURL + *cc.Service.Path
			cc.Service, cc.URL = nil, &url
		}
		if err := c.Create(ctx, config); err != nil {
			return nil, fmt.Errorf("create webhook configuration: %w", err)
		}
		return config, nil
	}
	return nil, errors.New("config/default renders no MutatingWebhookConfiguration")
}

// PublishRootCA writes the kube-root-ca.crt ConfigMap into a namespace, as
// the kube-controller-manager (which envtest does not run) does in a
// cluster; caPEM is the API server's CA (the rest.Config's CAData).
func PublishRootCA(ctx context.Context, c client.Client, namespace string, caPEM []byte) error {
	err := c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: namespace},
		Data:       map[string]string{"ca.crt": string(caPEM)},
	})
	if err != nil {
		return fmt.Errorf("publish kube-root-ca.crt in %s: %w", namespace, err)
	}
	return nil
}
