package coverage

import (
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/match"
)

// NewHit turns a matched request into a Hit.
func NewHit(r match.Result, method string, status int, client Client) Hit {
	h := Hit{Verb: r.Info.Verb, Status: status, Client: client, Test: TestFromUserAgent(client.UserAgent)}
	if r.Operation != nil {
		h.OperationID = r.Operation.ID
		return h
	}
	h.Unknown = UnknownShape(method, r.Info)
	return h
}

// UnknownShape names an unknown request without its object names, so that
// calls to one unknown endpoint add up: "GET /apis/example.com/v1/namespaces/{namespace}/widgets/{name}".
func UnknownShape(method string, info match.RequestInfo) string {
	if !info.IsResourceRequest {
		return method + " " + info.Path
	}
	var b strings.Builder
	b.Grow(64)
	b.WriteString(method)
	b.WriteString(" /")
	b.WriteString(info.APIPrefix)
	if info.APIGroup != "" {
		b.WriteString("/")
		b.WriteString(info.APIGroup)
	}
	b.WriteString("/")
	b.WriteString(info.APIVersion)
	if info.Namespace != "" && !(info.Resource == "namespaces" && info.Name == info.Namespace) {
		b.WriteString("/namespaces/{namespace}")
	}
	if info.Resource != "" {
		b.WriteString("/")
		b.WriteString(info.Resource)
	}
	if info.Name != "" {
		b.WriteString("/{name}")
	}
	if info.Subresource != "" {
		b.WriteString("/")
		b.WriteString(info.Subresource)
	}
	if info.Verb == "watch" {
		b.WriteString(" (watch)")
	}
	return b.String()
}
