package auditscope

import "testing"

func TestNamespaces(t *testing.T) {
	for _, c := range []struct {
		allowed   Namespaces
		namespace string
		want      bool
		describe  string
	}{
		{nil, "apisnoop-system", false, "in no namespace"},
		{Namespaces{"apisnoop-system"}, "apisnoop-system", true, "only in namespace apisnoop-system"},
		{Namespaces{"apisnoop-system"}, "team-a", false, "only in namespace apisnoop-system"},
		{Namespaces{"apisnoop-system", "conformance"}, "conformance", true, "only in namespaces apisnoop-system, conformance"},
		{Namespaces{"apisnoop-system", "*"}, "team-a", true, "in every namespace"},
	} {
		if got := c.allowed.Allows(c.namespace); got != c.want {
			t.Errorf("%v.Allows(%q) = %v, want %v", c.allowed, c.namespace, got, c.want)
		}
		if got := c.allowed.Describe(); got != c.describe {
			t.Errorf("%v.Describe() = %q, want %q", c.allowed, got, c.describe)
		}
	}
}
