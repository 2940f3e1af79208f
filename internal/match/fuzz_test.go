package match

import (
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

func addSeeds(f *testing.F) {
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"} {
		for _, path := range differentialPaths {
			f.Add(method, path, "")
		}
	}
	for _, query := range differentialQueries {
		f.Add("GET", "/api/v1/namespaces/x/pods", query)
	}
	for _, r := range benchmarkRequests {
		f.Add(r.method, r.path, r.query)
	}
}

// FuzzMatchAgainstRequestInfoFactory requires NewRequestInfo to agree with
// the API server's RequestInfoFactory field by field, and on whether it
// fails, for any method, path and query.
func FuzzMatchAgainstRequestInfoFactory(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, method, path, rawQuery string) {
		checkAgainstFactory(t, method, path, rawQuery)
	})
}

// FuzzMatch requires Match never to panic, to return only substrings of
// its input or constants, and to return an operation exactly when one of
// the catalog matches the path by plain template comparison.
func FuzzMatch(f *testing.F) {
	addSeeds(f)
	m := loadMatcher(f, "1.37")
	f.Fuzz(func(t *testing.T, method, path, rawQuery string) {
		r := m.Match(method, path, rawQuery)
		info := r.Info
		if info.Path != path {
			t.Fatalf("Path %q, want %q", info.Path, path)
		}
		for _, field := range []string{info.APIPrefix, info.APIGroup, info.APIVersion, info.Namespace, info.Resource, info.Subresource} {
			if !strings.Contains(path, field) {
				t.Fatalf("%q is not part of the path %q: %+v", field, path, info)
			}
		}
		// Name comes from the path, or from a fieldSelector in the query.
		if !strings.Contains(path, info.Name) && !(info.Verb == "list" || info.Verb == "watch") {
			t.Fatalf("name %q is not part of the path %q: %+v", info.Name, path, info)
		}
		switch info.Verb {
		case "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "", strings.ToLower(method):
		default:
			t.Fatalf("verb %q", info.Verb)
		}
		if r.Watch != (info.Verb == "watch") {
			t.Fatalf("Watch %v for verb %q", r.Watch, info.Verb)
		}
		want := referenceMatches(m.Catalog(), method, path)
		if r.Invalid {
			if r.Operation != nil {
				t.Fatalf("invalid request matched %s", r.Operation.ID)
			}
			return
		}
		if r.Operation == nil {
			if len(want) > 0 {
				t.Fatalf("%s %q matched nothing, but %s matches", method, path, want[0].ID)
			}
			return
		}
		found := false
		for _, op := range want {
			found = found || op == r.Operation
		}
		if !found {
			t.Fatalf("%s %q matched %s (%s %s), which does not match by template", method, path, r.Operation.ID, r.Operation.Method, r.Operation.Path)
		}
	})
}

// referenceMatches is the slow, obvious matcher: every operation whose
// method and template fit, trying GET for HEAD when no HEAD operation fits.
func referenceMatches(c *catalog.Catalog, method, path string) []*catalog.Operation {
	methods := []string{method}
	if method == "HEAD" {
		methods = append(methods, "GET")
	}
	requestSegments := strings.Split(strings.Trim(path, "/"), "/")
	for _, mm := range methods {
		var found []*catalog.Operation
		for i := range c.Operations {
			op := &c.Operations[i]
			if op.Method == mm && templateFits(strings.Split(strings.Trim(op.Path, "/"), "/"), requestSegments) {
				found = append(found, op)
			}
		}
		if len(found) > 0 {
			return found
		}
	}
	return nil
}

func templateFits(template, request []string) bool {
	for i, seg := range template {
		if i == len(template)-1 && (seg == "{path}" || seg == "{logpath}") {
			return len(request) > i
		}
		if i >= len(request) {
			return false
		}
		if strings.HasPrefix(seg, "{") {
			if request[i] == "" {
				return false
			}
		} else if seg != request[i] {
			return false
		}
	}
	return len(template) == len(request)
}
