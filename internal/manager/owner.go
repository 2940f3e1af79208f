package manager

import (
	"context"
	"fmt"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get

// installationOwner keeps an owner reference to the manager's own
// ServiceAccount on what the operator makes at run time in its namespace:
// its CA, the webhook's and the proxies' serving Secrets, and the leader
// Lease. Helm and kustomize delete what they installed, the ServiceAccount
// among it, but never knew of these; with the reference the garbage
// collector deletes them once the ServiceAccount is gone. The objects are
// made at different times (the Secrets as their controllers start, the
// Lease once leader election has run), so they are looked at every ownerRetry
// until all exist and name the owner, then every interval, in case one is
// deleted and made again; an object that already names the owner costs one
// read.
type installationOwner struct {
	// reader reads from the API server: a cached client would watch every
	// Lease of the cluster, which the operator may not.
	reader   client.Reader
	writer   client.Writer
	owner    metav1.OwnerReference
	secrets  []types.NamespacedName
	lease    *types.NamespacedName
	interval time.Duration
}

// ownerInterval and ownerRetry are how often installationOwner looks at the
// objects once they are all owned, and while some are missing.
const (
	ownerInterval = 30 * time.Second
	ownerRetry    = 2 * time.Second
)

// serviceAccountOwner is the owner reference to the ServiceAccount the
// manager runs as, when that is a ServiceAccount of namespace; ok is false
// for any other identity (a manager run by hand with a user's kubeconfig).
func serviceAccountOwner(ctx context.Context, clientset kubernetes.Interface, username, namespace string) (ref metav1.OwnerReference, ok bool, err error) {
	ns, name, err := serviceaccount.SplitUsername(username)
	if err != nil || ns != namespace {
		return metav1.OwnerReference{}, false, nil
	}
	sa, err := clientset.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return metav1.OwnerReference{}, false, fmt.Errorf("read the operator's service account %s/%s: %w", ns, name, err)
	}
	return metav1.OwnerReference{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}, true, nil
}

// Start looks at the objects now and every interval until ctx ends.
func (o *installationOwner) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("installation-owner")
	for {
		wait := o.interval
		if all, err := o.adoptAll(ctx); err != nil || !all {
			wait = ownerRetry
			if err != nil && ctx.Err() == nil {
				log.Info("cannot set the owner reference yet; retrying", "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// NeedLeaderElection: one replica is enough, and the Lease is the leader's.
func (o *installationOwner) NeedLeaderElection() bool { return true }

// adoptAll adopts every object; all says whether each exists and names the
// owner now.
func (o *installationOwner) adoptAll(ctx context.Context) (all bool, err error) {
	all = true
	adopt := func(key types.NamespacedName, obj client.Object) {
		owned, adoptErr := o.adopt(ctx, key, obj)
		all = all && owned
		if err == nil {
			err = adoptErr
		}
	}
	for _, key := range o.secrets {
		adopt(key, &corev1.Secret{})
	}
	if o.lease != nil {
		// Leader election updates the Lease every few seconds; a conflict
		// is retried (and costs leader election one retried renewal, well
		// within its deadline).
		adopt(*o.lease, &coordinationv1.Lease{})
	}
	return all, err
}

// adopt adds the owner reference to the object at key, if it exists and
// lacks it; owned says whether it exists and names the owner now.
func (o *installationOwner) adopt(ctx context.Context, key types.NamespacedName, obj client.Object) (owned bool, err error) {
	if err := o.reader.Get(ctx, key, obj); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	refs := obj.GetOwnerReferences()
	if slices.ContainsFunc(refs, func(r metav1.OwnerReference) bool { return r.UID == o.owner.UID }) {
		return true, nil
	}
	obj.SetOwnerReferences(append(refs, o.owner))
	if err := o.writer.Update(ctx, obj); err != nil {
		return false, client.IgnoreNotFound(fmt.Errorf("set the owner of %T %s: %w", obj, key, err))
	}
	return true, nil
}
