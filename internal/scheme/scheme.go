// Package scheme is the operator's runtime scheme: the built-in types and the
// SnoopSession API, for the manager, the demo and every test's client.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
)

// New returns a scheme with the built-in types and the SnoopSession API.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(snoopv1alpha1.AddToScheme(s))
	return s
}
