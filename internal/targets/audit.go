package targets

import (
	"strings"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/audit"
)

// AuditSelector is a session's spec.audit, parsed: which audited requests
// the session counts.
type AuditSelector struct {
	users      map[string]bool // users and service accounts, as user names
	namespaces map[string]bool
	userAgents []string // prefixes
}

// NewAuditSelector parses spec.audit. A session without one counts every
// audited request.
func NewAuditSelector(session *snoopv1alpha1.SnoopSession) *AuditSelector {
	sel := &AuditSelector{}
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
func (s *AuditSelector) Matches(user, namespace, userAgent string) bool {
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
