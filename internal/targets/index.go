package targets

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
)

// NamespaceIndex is the field index of SnoopSessions by the namespaces they
// may target, so that admitting a pod reads only the sessions that can
// select it, not every session of the cluster.
const NamespaceIndex = "snoop.apisnoop.dev/targetNamespace"

// anyNamespace is the index value of sessions that select namespaces by
// label: they may target any namespace.
const anyNamespace = "*"

// IndexSessions registers NamespaceIndex with a cache.
func IndexSessions(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &snoopv1alpha1.SnoopSession{}, NamespaceIndex, indexValues); err != nil {
		return fmt.Errorf("index SnoopSessions by target namespace: %w", err)
	}
	return nil
}

func indexValues(obj client.Object) []string {
	s, ok := obj.(*snoopv1alpha1.SnoopSession)
	if !ok || !RecordsPods(s) {
		return nil // audit sessions target no pods
	}
	switch t := s.Spec.Targets; {
	case t.NamespaceSelector != nil:
		return []string{anyNamespace}
	case len(t.Namespaces) > 0:
		return t.Namespaces
	}
	return []string{s.Namespace}
}

// SessionsFor returns the sessions that may target pods of namespace ns
// (those naming it, and those selecting namespaces by label), oldest first,
// from a cache that has NamespaceIndex. Callers still check Matches.
func SessionsFor(ctx context.Context, c client.Reader, ns string) ([]snoopv1alpha1.SnoopSession, error) {
	var sessions []snoopv1alpha1.SnoopSession
	for _, key := range []string{ns, anyNamespace} {
		var list snoopv1alpha1.SnoopSessionList
		if err := c.List(ctx, &list, client.MatchingFields{NamespaceIndex: key}); err != nil {
			return nil, fmt.Errorf("list SnoopSessions targeting %s: %w", ns, err)
		}
		sessions = append(sessions, list.Items...)
	}
	slices.SortFunc(sessions, func(a, b snoopv1alpha1.SnoopSession) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return sessions, nil
}

// Namespaces lists the namespaces a session targets by name; for a session
// that selects namespaces by label it returns nil and false.
func Namespaces(s *snoopv1alpha1.SnoopSession) ([]string, bool) {
	v := indexValues(s)
	if len(v) == 1 && v[0] == anyNamespace {
		return nil, false
	}
	return v, true
}
