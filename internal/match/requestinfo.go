package match

import (
	"encoding/binary"
	"math/bits"
	"strings"
	"unsafe"
)

// RequestInfo mirrors k8s.io/apiserver/pkg/endpoints/request.RequestInfo,
// without Parts, FieldSelector and LabelSelector, which coverage does not
// need. Its fields are computed with exactly the rules of
// request.RequestInfoFactory{APIPrefixes: {"api", "apis"},
// GrouplessAPIPrefixes: {"api"}}, the configuration of kube-apiserver.
type RequestInfo struct {
	// IsResourceRequest tells resource requests (/api/v1/pods) from
	// non-resource ones (/healthz, /apis/apps/v1).
	IsResourceRequest bool
	// Path is the URL path as given to Match.
	Path string
	// Verb is the Kubernetes verb: get list watch create update patch delete
	// deletecollection proxy, or "" for other methods on resources; for
	// non-resource requests it is the lower-case HTTP method.
	Verb string

	APIPrefix, APIGroup, APIVersion, Namespace, Resource, Subresource, Name string
}

// maxLeadingSegments is how many leading path segments the factory's rules
// ever look at: prefix, group, version, special verb, "namespaces",
// namespace, resource, name, subresource.
const maxLeadingSegments = 9

// pathSegments holds the first segments of a path split like the factory's
// splitPath (trim all leading and trailing slashes, split at every slash),
// as substrings of the path, plus the total count and the rest of the
// path after the first ones, for the trie. splitSegments fills a zero one.
type pathSegments struct {
	first [maxLeadingSegments]string
	count int
	// rest is the trimmed path from segment maxLeadingSegments on, empty
	// when there are no more.
	rest string
}

func splitSegments(path string, s *pathSegments) {
	trimmed := strings.Trim(path, "/")
	if trimmed == "" {
		return
	}
	// Eight bytes at a time, then a step per slash: a byte loop, with a
	// compare and a branch per byte, takes half as long again on API
	// paths.
	const (
		slashes = 0x2f2f2f2f2f2f2f2f
		low7    = 0x7f7f7f7f7f7f7f7f
	)
	b := unsafe.Slice(unsafe.StringData(trimmed), len(trimmed))
	start, i := 0, 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:]) ^ slashes
		// The top bit of each byte of x that is zero, exactly (no carry
		// crosses bytes).
		for m := ^((x&low7 + low7) | x | low7); m != 0; m &= m - 1 {
			j := i + bits.TrailingZeros64(m)/8
			s.cut(trimmed, start, j)
			start = j + 1
		}
	}
	for ; i < len(b); i++ {
		if b[i] == '/' {
			s.cut(trimmed, start, i)
			start = i + 1
		}
	}
	if s.count < maxLeadingSegments {
		s.first[s.count] = trimmed[start:]
	}
	s.count++
}

// cut ends a segment of trimmed at a slash at i.
func (s *pathSegments) cut(trimmed string, start, i int) {
	if s.count < maxLeadingSegments {
		s.first[s.count] = trimmed[start:i]
	}
	s.count++
	if s.count == maxLeadingSegments {
		s.rest = trimmed[i+1:]
	}
}

// at returns segment i; callers only ask for i < count and i <
// maxLeadingSegments, which the factory's rules guarantee.
func (s *pathSegments) at(i int) string { return s.first[i] }

// lowerMethod is strings.ToLower(method) without allocating for the
// methods clients actually send.
func lowerMethod(method string) string {
	switch method {
	case "GET":
		return "get"
	case "PUT":
		return "put"
	case "POST":
		return "post"
	case "PATCH":
		return "patch"
	case "DELETE":
		return "delete"
	case "HEAD":
		return "head"
	case "OPTIONS":
		return "options"
	case "CONNECT":
		return "connect"
	case "TRACE":
		return "trace"
	}
	return strings.ToLower(method) // allocates only when something changes
}

// NewRequestInfo computes what RequestInfoFactory.NewRequestInfo computes
// for a request with this method, URL path (decoded, as in URL.Path) and raw
// query. ok is false where the factory returns an error (a special verb
// such as /api/v1/watch with nothing after it); info is then what the
// factory returns alongside its error, and the API server answers such a
// request with 500 without serving it.
//
// It allocates only when a list or watch carries a fieldSelector that
// mentions metadata.name (or a watch value that folds to "false" only under
// Unicode folding), see listVerbAndName.
func NewRequestInfo(method, path, rawQuery string) (info RequestInfo, ok bool) {
	var parts pathSegments
	splitSegments(path, &parts)
	ok = fillRequestInfo(&info, method, path, rawQuery, &parts)
	return info, ok
}

// fillRequestInfo is NewRequestInfo writing to *info, which must be zero,
// with the path already split: the matcher fills its Result in place
// rather than copying the struct, and walks its trie with the same parts.
func fillRequestInfo(info *RequestInfo, method, path, rawQuery string, parts *pathSegments) bool {
	info.Path, info.Verb = path, lowerMethod(method)
	if parts.count < 3 {
		return true
	}
	prefix := parts.at(0)
	if prefix != "api" && prefix != "apis" {
		return true
	}
	info.APIPrefix = prefix
	i := 1
	if prefix == "apis" {
		// /apis/<group>/<version> is discovery, not a resource.
		if parts.count-i < 3 {
			return true
		}
		info.APIGroup = parts.at(i)
		i++
	}
	info.IsResourceRequest = true
	info.APIVersion = parts.at(i)
	i++

	// The factory also notes whether the verb came from the path, but only
	// for FieldSelector and LabelSelector, which are not computed here.
	switch parts.at(i) {
	case "proxy", "watch":
		if parts.count-i < 2 {
			return false
		}
		info.Verb = parts.at(i)
		i++
	default:
		switch method {
		case "POST":
			info.Verb = "create"
		case "GET", "HEAD":
			info.Verb = "get"
		case "PUT":
			info.Verb = "update"
		case "PATCH":
			info.Verb = "patch"
		case "DELETE":
			info.Verb = "delete"
		default:
			info.Verb = ""
		}
	}

	if parts.at(i) == "namespaces" {
		if parts.count-i > 1 {
			info.Namespace = parts.at(i + 1)
			// namespaces/{name}/status and /finalize are subresources of
			// the namespace, anything else is a namespaced resource.
			if parts.count-i > 2 {
				if next := parts.at(i + 2); next != "status" && next != "finalize" {
					i += 2
				}
			}
		}
	}

	// The remaining parts are resource/name/subresource/...; proxy takes
	// no subresource, everything after the name is the proxied path.
	rest := parts.count - i
	if rest >= 3 && info.Verb != "proxy" {
		info.Subresource = parts.at(i + 2)
	}
	if rest >= 2 {
		info.Name = parts.at(i + 1)
	}
	if rest >= 1 {
		info.Resource = parts.at(i)
	}

	if info.Name == "" && info.Verb == "get" {
		info.Verb, info.Name = listVerbAndName(rawQuery)
	}
	if info.Name == "" && info.Verb == "delete" {
		info.Verb = "deletecollection"
	}
	return true
}
