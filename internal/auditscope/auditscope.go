// Package auditscope says which audited requests a SnoopSession of the
// audit stream counts (its spec.audit) and in which namespaces such sessions
// are taken at all. It is apart from package targets, which selects pods
// through the API server, so that kubectl-snoop reads audit logs with the
// same filter without linking the operator.
package auditscope

import (
	"slices"
	"strings"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
)

// Namespaces are the namespaces whose SnoopSessions may take the API
// server's audit stream (spec.source: audit); "*" is every namespace. An
// audit session counts requests from the whole cluster, whoever sent them,
// so whoever may create a session in a namespace, or read the results
// there, would learn which users and workloads of the cluster call what:
// the operator takes audit sessions only in the namespaces a cluster admin
// names (the manager's --audit-session-namespaces), by default its own.
type Namespaces []string

// Allows reports whether an audit session in namespace is taken.
func (a Namespaces) Allows(namespace string) bool {
	return slices.Contains(a, "*") || slices.Contains(a, namespace)
}

// Describe says where audit sessions are taken, for messages.
func (a Namespaces) Describe() string {
	switch {
	case slices.Contains(a, "*"):
		return "in every namespace"
	case len(a) == 0:
		return "in no namespace"
	case len(a) == 1:
		return "only in namespace " + a[0]
	}
	return "only in namespaces " + strings.Join(a, ", ")
}

// Selector is a session's spec.audit, parsed: which audited requests
// the session counts.
type Selector struct {
	users      map[string]bool // users and service accounts, as user names
	namespaces map[string]bool
	userAgents []string // prefixes
}

// NewSelector parses spec.audit. A session without one counts every
// audited request.
func NewSelector(session *snoopv1alpha1.SnoopSession) *Selector {
	sel := &Selector{}
	f := session.Spec.Audit
	if f == nil {
		return sel
	}
	if len(f.Users)+len(f.ServiceAccounts) > 0 {
		sel.users = make(map[string]bool, len(f.Users)+len(f.ServiceAccounts))
		for _, u := range f.Users {
			sel.users[u] = true
		}
		for _, sa := range f.ServiceAccounts {
			if ns, name, ok := strings.Cut(sa, "/"); ok {
				sel.users[audit.ServiceAccountUserPrefix+ns+":"+name] = true
			}
		}
	}
	if len(f.Namespaces) > 0 {
		sel.namespaces = make(map[string]bool, len(f.Namespaces))
		for _, ns := range f.Namespaces {
			sel.namespaces[ns] = true
		}
	}
	sel.userAgents = f.UserAgents
	return sel
}

// Matches reports whether the session counts a request by user, about an
// object in namespace (empty for cluster-scoped and non-resource
// requests), sent with userAgent: it passes every list the filter sets.
func (s *Selector) Matches(user, namespace, userAgent string) bool {
	if s.users != nil && !s.users[user] {
		return false
	}
	if s.namespaces != nil && !s.namespaces[namespace] {
		return false
	}
	if len(s.userAgents) == 0 {
		return true
	}
	for _, p := range s.userAgents {
		if strings.HasPrefix(userAgent, p) {
			return true
		}
	}
	return false
}
