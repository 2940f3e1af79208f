// Package match maps API server requests to the Kubernetes API operations
// of a release: it computes the request's RequestInfo exactly as the API
// server does, and finds the OpenAPI operation whose method and path
// template the request matches. Matching does not allocate on the common
// path, so that it can run on every request of a busy cluster.
package match

import (
	"net/url"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// Result is what Match finds out about one request.
type Result struct {
	Info RequestInfo
	// Operation is the catalog operation the request uses, nil when the
	// request matches no operation of the release ("unknown"). It points
	// into the catalog's Operations.
	Operation *catalog.Operation
	// Watch tells that the request is a watch: ?watch=true on a collection
	// (counted on the list operation) or a legacy /watch/ path (matching
	// the catalog's watch operations).
	Watch bool
	// Invalid tells that the API server rejects the request while building
	// its RequestInfo (RequestInfoFactory returns an error, e.g. for
	// /api/v1/watch with nothing after it) and answers 500; Info is then
	// what the factory returns with its error and Operation is nil.
	Invalid bool
}

// Matcher matches requests against the operations of one catalog. It is
// safe for concurrent use.
type Matcher struct {
	catalog *catalog.Catalog
	root    *node
}

// New builds the path-template trie of the catalog's operations.
func New(c *catalog.Catalog) *Matcher {
	m := &Matcher{catalog: c, root: &node{}}
	for i := range c.Operations {
		m.root.insert(&c.Operations[i])
	}
	m.root.freeze()
	return m
}

// Catalog returns the catalog the matcher was built from.
func (m *Matcher) Catalog() *catalog.Catalog { return m.catalog }

// Match finds the request info and operation of a request. path is the
// decoded URL path (URL.Path, as the API server sees it), rawQuery the
// query without '?'.
//
// Operations are chosen by method and path template: HEAD uses the HEAD
// operation where there is one (proxy) and the GET operation otherwise; a
// watch by ?watch=true is a GET on the collection and so uses the list
// operation; any method matches the connect operations that exist for it
// (exec and attach have GET and POST, proxy all seven methods). The query
// and the verb never change which operation matches, so a DELETE on a
// collection is deletecollection because that is the DELETE operation of
// the collection path.
//
// Leading and trailing slashes are ignored, as the API server's
// RequestInfo ignores them: /apis/apps and /apis/apps/ both match the
// discovery operation /apis/apps/, and .../proxy/ matches the operation
// .../proxy, not .../proxy/{path}, whose {path} must be non-empty.
func (m *Matcher) Match(method, path, rawQuery string) Result {
	var r Result
	m.match(&r, method, path, rawQuery)
	return r
}

// match is Match filling a zero *r: the result is large enough that
// copying it between functions shows on every request.
func (m *Matcher) match(r *Result, method, path, rawQuery string) {
	var parts pathSegments
	splitSegments(path, &parts)
	ok := fillRequestInfo(&r.Info, method, path, rawQuery, &parts)
	r.Watch, r.Invalid = r.Info.Verb == "watch", !ok
	if !ok {
		return
	}
	want, fallback := methodOf(method), methodNone
	if want == methodHead {
		fallback = methodGet
	}
	if found := m.root.lookupSegments(&parts, 0, want, fallback); found != nil {
		if op := found.ops[want]; op != nil {
			r.Operation = op
		} else {
			r.Operation = found.ops[fallback]
		}
	}
}

// MatchRequestURI is Match for a request URI as found in audit events
// (path, optionally '?' and the raw query). The path is unescaped like
// URL.Path, which allocates only when it contains '%'; an unparsable
// escape leaves it as it is.
func (m *Matcher) MatchRequestURI(method, requestURI string) Result {
	var r Result
	m.MatchRequestURIInto(&r, method, requestURI)
	return r
}

// MatchRequestURIInto is MatchRequestURI writing to *r, which it zeroes
// first, for callers matching every event of a log: it saves copying the
// result.
func (m *Matcher) MatchRequestURIInto(r *Result, method, requestURI string) {
	*r = Result{}
	path, rawQuery := requestURI, ""
	if q := strings.IndexByte(requestURI, '?'); q >= 0 {
		path, rawQuery = requestURI[:q], requestURI[q+1:]
	}
	if strings.IndexByte(path, '%') >= 0 {
		if unescaped, err := url.PathUnescape(path); err == nil {
			path = unescaped
		}
	}
	m.match(r, method, path, rawQuery)
}
