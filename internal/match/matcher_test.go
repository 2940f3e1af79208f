package match

import (
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

func loadMatcher(t testing.TB, release string) *Matcher {
	t.Helper()
	c, err := catalog.Load(release)
	if err != nil {
		t.Fatal(err)
	}
	return New(c)
}

// sampleValues instantiates path parameters.
var sampleValues = map[string]string{
	"{namespace}": "ns-1",
	"{name}":      "obj-1",
	"{path}":      "some/deep/path",
	"{logpath}":   "kube-apiserver.log",
}

func instantiate(t *testing.T, template string) string {
	t.Helper()
	var b strings.Builder
	for i, seg := range strings.Split(template, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if strings.HasPrefix(seg, "{") {
			v, ok := sampleValues[seg]
			if !ok {
				t.Fatalf("no sample value for %s in %s", seg, template)
			}
			seg = v
		}
		b.WriteString(seg)
	}
	return b.String()
}

// TestEveryOperationMatchesItself instantiates every operation's template
// of every embedded release and requires the request to match exactly that
// operation, and its RequestInfo to agree with the operation's metadata.
func TestEveryOperationMatchesItself(t *testing.T) {
	for _, release := range catalog.Releases() {
		t.Run(release, func(t *testing.T) {
			m := loadMatcher(t, release)
			byMethodPath := map[string]string{}
			checked := 0
			defer func() { t.Logf("%d operations, %d requests matched themselves", len(m.Catalog().Operations), checked) }()
			for i := range m.Catalog().Operations {
				op := &m.Catalog().Operations[i]
				key := op.Method + " " + op.Path
				if prev, dup := byMethodPath[key]; dup {
					t.Errorf("%s and %s share %s", prev, op.ID, key)
				}
				byMethodPath[key] = op.ID

				path := instantiate(t, op.Path)
				paths := []string{path}
				if strings.HasSuffix(path, "/") {
					paths = append(paths, strings.TrimSuffix(path, "/"))
				}
				for _, p := range paths {
					checked++
					checkAgainstFactory(t, op.Method, p, "")
					got := m.Match(op.Method, p, "")
					if got.Operation != op {
						t.Errorf("%s %s: got %s, want %s", op.Method, p, id(got.Operation), op.ID)
						continue
					}
					checkInfoAgainstOperation(t, op, got)
				}
				if op.Action == "list" {
					// A watch on a collection counts on the list operation.
					for _, q := range []string{"watch=true", "watch=1"} {
						got := m.Match("GET", path, q)
						if got.Operation != op || !got.Watch || got.Info.Verb != "watch" {
							t.Errorf("GET %s?%s: got %s watch=%v verb=%s, want %s watch", path, q, id(got.Operation), got.Watch, got.Info.Verb, op.ID)
						}
					}
				}
				if op.Method == "GET" {
					if got := m.Match("HEAD", path, ""); got.Operation == nil || (got.Operation != op && got.Operation.Method != "HEAD") {
						t.Errorf("HEAD %s: got %s, want %s or a HEAD operation", path, id(got.Operation), op.ID)
					}
				}
			}
		})
	}
}

// checkInfoAgainstOperation compares the RequestInfo of an instantiated
// template with what the catalog says about the operation.
func checkInfoAgainstOperation(t *testing.T, op *catalog.Operation, got Result) {
	t.Helper()
	info := got.Info
	if op.Class != catalog.ClassResource {
		if info.IsResourceRequest {
			t.Errorf("%s: %s is a resource request", op.ID, info.Path)
		}
		return
	}
	if !info.IsResourceRequest || info.APIGroup != op.Group || info.APIVersion != op.Version || info.Resource != op.Resource || info.Subresource != op.Subresource {
		t.Errorf("%s: info %+v does not agree with group %q version %q resource %q subresource %q", op.ID, info, op.Group, op.Version, op.Resource, op.Subresource)
	}
	if got.Watch != op.Watch {
		t.Errorf("%s: Watch=%v, operation Watch=%v", op.ID, got.Watch, op.Watch)
	}
	wantVerb := map[string]string{
		"get": "get", "list": "list", "create": "create", "update": "update", "patch": "patch",
		"delete": "delete", "deletecollection": "deletecollection", "watch": "watch", "watchlist": "watch",
		"post": "create", "put": "update",
	}[op.Action]
	if op.Action == "connect" {
		wantVerb = map[string]string{"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "OPTIONS": ""}[op.Method]
	}
	if wantVerb != "" && info.Verb != wantVerb {
		t.Errorf("%s (%s %s): verb %q, want %q", op.ID, op.Method, op.Action, info.Verb, wantVerb)
	}
}

func id(op *catalog.Operation) string {
	if op == nil {
		return "<unknown>"
	}
	return op.ID
}

// TestTrickyRequests checks real-world requests against 1.31 and 1.37.
func TestTrickyRequests(t *testing.T) {
	type want struct {
		op    string // "" for unknown
		verb  string
		name  string
		watch bool
	}
	tests := []struct {
		method, path, query string
		// per release; a release missing from the map expects the "*" entry
		want map[string]want
	}{
		{"GET", "/api/v1/namespaces/default/pods", "watch=true&resourceVersion=1", map[string]want{"*": {"listCoreV1NamespacedPod", "watch", "", true}}},
		{"GET", "/api/v1/namespaces/default/pods", "watch=1", map[string]want{"*": {"listCoreV1NamespacedPod", "watch", "", true}}},
		{"GET", "/api/v1/namespaces/default/pods", "watch=false", map[string]want{"*": {"listCoreV1NamespacedPod", "list", "", false}}},
		{"GET", "/api/v1/watch/namespaces/default/pods", "", map[string]want{"*": {"watchCoreV1NamespacedPodList", "watch", "", true}}},
		{"GET", "/api/v1/watch/namespaces/default/pods/p", "", map[string]want{"*": {"watchCoreV1NamespacedPod", "watch", "p", true}}},
		{"GET", "/api/v1/watch/pods", "", map[string]want{"*": {"watchCoreV1PodListForAllNamespaces", "watch", "", true}}},
		{"DELETE", "/api/v1/namespaces/x/pods", "", map[string]want{"*": {"deleteCoreV1CollectionNamespacedPod", "deletecollection", "", false}}},
		{"DELETE", "/api/v1/namespaces/x/pods/p", "", map[string]want{"*": {"deleteCoreV1NamespacedPod", "delete", "p", false}}},
		{"GET", "/api/v1/namespaces/x", "", map[string]want{"*": {"readCoreV1Namespace", "get", "x", false}}},
		{"GET", "/api/v1/namespaces", "", map[string]want{"*": {"listCoreV1Namespace", "list", "", false}}},
		{"PUT", "/api/v1/namespaces/x/finalize", "", map[string]want{"*": {"replaceCoreV1NamespaceFinalize", "update", "x", false}}},
		{"PUT", "/api/v1/namespaces/x/status", "", map[string]want{"*": {"replaceCoreV1NamespaceStatus", "update", "x", false}}},
		{"GET", "/api/v1/namespaces/x/pods/p/log", "container=c&follow=true", map[string]want{"*": {"readCoreV1NamespacedPodLog", "get", "p", false}}},
		{"POST", "/api/v1/namespaces/x/pods/p/exec", "command=ls", map[string]want{"*": {"connectCoreV1PostNamespacedPodExec", "create", "p", false}}},
		{"GET", "/api/v1/namespaces/x/pods/p/exec", "command=ls&stdout=true", map[string]want{"*": {"connectCoreV1GetNamespacedPodExec", "get", "p", false}}},
		{"GET", "/api/v1/namespaces/x/pods/p/attach", "", map[string]want{"*": {"connectCoreV1GetNamespacedPodAttach", "get", "p", false}}},
		{"GET", "/api/v1/namespaces/x/pods/p/portforward", "ports=80", map[string]want{"*": {"connectCoreV1GetNamespacedPodPortforward", "get", "p", false}}},
		{"POST", "/api/v1/namespaces/x/pods/p/portforward", "", map[string]want{"*": {"connectCoreV1PostNamespacedPodPortforward", "create", "p", false}}},
		{"GET", "/api/v1/namespaces/x/services/s:80/proxy/some/deep/path", "", map[string]want{"*": {"connectCoreV1GetNamespacedServiceProxyWithPath", "get", "s:80", false}}},
		{"GET", "/api/v1/namespaces/x/services/s:80/proxy", "", map[string]want{"*": {"connectCoreV1GetNamespacedServiceProxy", "get", "s:80", false}}},
		{"GET", "/api/v1/namespaces/x/services/s:80/proxy/", "", map[string]want{"*": {"connectCoreV1GetNamespacedServiceProxy", "get", "s:80", false}}},
		{"HEAD", "/api/v1/nodes/n/proxy/metrics", "", map[string]want{"*": {"connectCoreV1HeadNodeProxyWithPath", "get", "n", false}}},
		{"OPTIONS", "/api/v1/namespaces/x/pods/p/proxy/a", "", map[string]want{"*": {"connectCoreV1OptionsNamespacedPodProxyWithPath", "", "p", false}}},
		{"PATCH", "/apis/apps/v1/namespaces/x/deployments/d/scale", "", map[string]want{"*": {"patchAppsV1NamespacedDeploymentScale", "patch", "d", false}}},
		{"POST", "/api/v1/namespaces/x/pods/p/eviction", "", map[string]want{"*": {"createCoreV1NamespacedPodEviction", "create", "p", false}}},
		{"POST", "/api/v1/namespaces/x/serviceaccounts/sa/token", "", map[string]want{"*": {"createCoreV1NamespacedServiceAccountToken", "create", "sa", false}}},
		{"PATCH", "/api/v1/namespaces/x/pods/p/ephemeralcontainers", "", map[string]want{"*": {"patchCoreV1NamespacedPodEphemeralcontainers", "patch", "p", false}}},
		{"PATCH", "/api/v1/namespaces/x/pods/p/resize", "", map[string]want{"*": {"patchCoreV1NamespacedPodResize", "patch", "p", false}, "1.31": {"", "patch", "p", false}}},
		{"POST", "/api/v1/namespaces/x/pods/p/binding", "", map[string]want{"*": {"createCoreV1NamespacedPodBinding", "create", "p", false}}},
		{"GET", "/apis", "", map[string]want{"*": {"getAPIVersions", "get", "", false}}},
		{"GET", "/apis/", "", map[string]want{"*": {"getAPIVersions", "get", "", false}}},
		{"GET", "/apis/apps", "", map[string]want{"*": {"getAppsAPIGroup", "get", "", false}}},
		{"GET", "/apis/apps/", "", map[string]want{"*": {"getAppsAPIGroup", "get", "", false}}},
		{"GET", "/apis/apps/v1", "", map[string]want{"*": {"getAppsV1APIResources", "get", "", false}}},
		{"GET", "/api", "", map[string]want{"*": {"getCoreAPIVersions", "get", "", false}}},
		{"GET", "/api/v1", "", map[string]want{"*": {"getCoreV1APIResources", "get", "", false}}},
		{"GET", "/api/v1/", "", map[string]want{"*": {"getCoreV1APIResources", "get", "", false}}},
		{"GET", "/version", "", map[string]want{"*": {"getCodeVersion", "get", "", false}}},
		{"GET", "/.well-known/openid-configuration", "", map[string]want{"*": {"getServiceAccountIssuerOpenIDConfiguration", "get", "", false}}},
		{"GET", "/openid/v1/jwks", "", map[string]want{"*": {"getServiceAccountIssuerOpenIDKeyset", "get", "", false}}},
		{"GET", "/logs", "", map[string]want{"*": {"logFileListHandler", "get", "", false}}},
		{"GET", "/logs/kube-apiserver.log", "", map[string]want{"*": {"logFileHandler", "get", "", false}}},
		{"GET", "/logs/pods/x/y.log", "", map[string]want{"*": {"logFileHandler", "get", "", false}}},
		// The swagger documents no /openapi operations.
		{"GET", "/openapi/v2", "", map[string]want{"*": {"", "get", "", false}}},
		{"GET", "/openapi/v3", "", map[string]want{"*": {"", "get", "", false}}},
		{"GET", "/healthz", "", map[string]want{"*": {"", "get", "", false}}},
		{"GET", "/apis/example.com/v1/widgets", "", map[string]want{"*": {"", "list", "", false}}},
		{"GET", "/api/v1/namespaces/x/pods", "fieldSelector=metadata.name%3Dp", map[string]want{"*": {"listCoreV1NamespacedPod", "list", "p", false}}},
		{"GET", "/api/v1/nodes", "fieldSelector=metadata.name%3Dn1&watch=true&resourceVersion=5", map[string]want{"*": {"listCoreV1Node", "watch", "n1", true}}},
		{"HEAD", "/api/v1/namespaces/x/pods/p", "", map[string]want{"*": {"readCoreV1NamespacedPod", "get", "p", false}}},
		{"HEAD", "/api/v1/namespaces/x/pods", "", map[string]want{"*": {"listCoreV1NamespacedPod", "list", "", false}}},
		{"OPTIONS", "/api/v1/namespaces/x/pods", "", map[string]want{"*": {"", "", "", false}}},
		{"OPTIONS", "/healthz", "", map[string]want{"*": {"", "options", "", false}}},
		{"TRACE", "/api/v1/namespaces/x/pods/p", "", map[string]want{"*": {"", "", "p", false}}},
		{"GET", "/api/v1/watch", "", map[string]want{"*": {"", "get", "", false}}},
	}
	for _, release := range []string{"1.31", "1.37"} {
		m := loadMatcher(t, release)
		for _, tt := range tests {
			w, ok := tt.want[release]
			if !ok {
				w = tt.want["*"]
			}
			got := m.Match(tt.method, tt.path, tt.query)
			if id(got.Operation) != orUnknown(w.op) || got.Info.Verb != w.verb || got.Info.Name != w.name || got.Watch != w.watch {
				t.Errorf("%s: %s %s?%s: got %s verb=%q name=%q watch=%v, want %s verb=%q name=%q watch=%v",
					release, tt.method, tt.path, tt.query, id(got.Operation), got.Info.Verb, got.Info.Name, got.Watch, orUnknown(w.op), w.verb, w.name, w.watch)
			}
			checkAgainstFactory(t, tt.method, tt.path, tt.query)
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func TestInvalidRequest(t *testing.T) {
	m := loadMatcher(t, "1.37")
	got := m.Match("GET", "/api/v1/watch", "")
	if !got.Invalid || got.Operation != nil || got.Info.APIVersion != "v1" || !got.Info.IsResourceRequest {
		t.Errorf("GET /api/v1/watch: got %+v", got)
	}
	if got := m.Match("GET", "/api/v1/pods", ""); got.Invalid {
		t.Errorf("GET /api/v1/pods: Invalid")
	}
}

func TestMatchRequestURI(t *testing.T) {
	m := loadMatcher(t, "1.37")
	got := m.MatchRequestURI("GET", "/api/v1/namespaces/x/pods/p%3Aq?watch=true")
	if id(got.Operation) != "readCoreV1NamespacedPod" || got.Info.Name != "p:q" {
		t.Errorf("got %s %+v", id(got.Operation), got.Info)
	}
	got = m.MatchRequestURI("GET", "/api/v1/namespaces/x/pods?watch=true")
	if id(got.Operation) != "listCoreV1NamespacedPod" || !got.Watch {
		t.Errorf("got %s %+v", id(got.Operation), got.Info)
	}
}
