package issuer

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// SecretKeyCA is the key, beside tls.crt and tls.key, of the CA that signed
// a pair: the one clients of the pair trust.
const SecretKeyCA = "ca.crt"

// Managed selects the objects that carry snoopv1alpha1.ManagedByLabel.
func Managed() labels.Selector {
	return labels.SelectorFromSet(labels.Set{snoopv1alpha1.ManagedByLabel: snoopv1alpha1.ManagedByValue})
}

// IsManaged reports whether the operator wrote an object.
func IsManaged(obj metav1.Object) bool {
	return obj.GetLabels()[snoopv1alpha1.ManagedByLabel] == snoopv1alpha1.ManagedByValue
}

// MarkManaged labels an object as the operator's, keeping its other labels.
func MarkManaged(obj metav1.Object) {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[snoopv1alpha1.ManagedByLabel] = snoopv1alpha1.ManagedByValue
	obj.SetLabels(labels)
}

// CAStore keeps the operator's CA in a Secret of its own namespace, making it
// on first use. It caches what it read: the CA changes only by hand, and a
// new CA would have to reach every injected pod's trust bundle.
type CAStore struct {
	// Client must not read Secrets from a cache, which would watch and keep
	// every Secret of the cluster (manager.New switches that cache off).
	Client client.Client
	Secret types.NamespacedName

	mu sync.Mutex
	ca *signer.CA
}

// Get returns the CA, creating its Secret when there is none.
func (s *CAStore) Get(ctx context.Context) (*signer.CA, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ca != nil {
		return s.ca, nil
	}
	secret := &corev1.Secret{}
	err := s.Client.Get(ctx, s.Secret, secret)
	if apierrors.IsNotFound(err) {
		ca, err := signer.NewCA("apisnoop proxy CA")
		if err != nil {
			return nil, err
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.Secret.Name, Namespace: s.Secret.Namespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: ca.CertPEM, corev1.TLSPrivateKeyKey: ca.KeyPEM},
		}
		MarkManaged(secret)
		if err := s.Client.Create(ctx, secret); err == nil {
			s.ca = ca
			return ca, nil
		} else if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create CA secret: %w", err)
		}
		// Another replica made it first: use theirs.
		err = s.Client.Get(ctx, s.Secret, secret)
	}
	if err != nil {
		return nil, fmt.Errorf("get CA secret: %w", err)
	}
	ca, err := signer.ParseCA(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("CA secret %s: %w", s.Secret, err)
	}
	s.ca = ca
	return ca, nil
}

// TrustBundle is what injected pods verify the API server with: the
// cluster's CA (kube-root-ca.crt) followed by the operator's, so that a
// client accepts both the real API server and the proxy in front of it.
func TrustBundle(clusterCA []byte, ca *signer.CA) []byte {
	return JoinPEM(clusterCA, ca.CertPEM)
}

// JoinPEM concatenates PEM documents into a new one, each starting on a
// line of its own.
func JoinPEM(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, p...)
	}
	return out
}
