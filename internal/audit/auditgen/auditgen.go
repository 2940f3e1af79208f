// Package auditgen writes realistic Metadata-level audit logs for
// benchmarks: every event the shape and size of the API server's, a mix of
// reads, writes, watches, discovery, leases and a custom resource; and
// single events with request bodies for the tests of field coverage.
package auditgen

import (
	"bufio"
	"fmt"
	"io"
)

var requestMix = []struct{ verb, uri, resource, sub string }{
	{"list", "/api/v1/namespaces/ns-%d/pods?limit=500", "pods", ""},
	{"get", "/api/v1/namespaces/ns-%d/pods/web-%d", "pods", ""},
	{"watch", "/api/v1/namespaces/ns-%d/configmaps?allowWatchBookmarks=true&resourceVersion=%d&watch=true", "configmaps", ""},
	{"create", "/apis/apps/v1/namespaces/ns-%d/deployments?fieldManager=kubectl-client-side-apply", "deployments", ""},
	{"patch", "/apis/apps/v1/namespaces/ns-%d/deployments/web-%d?fieldManager=kubectl", "deployments", ""},
	{"update", "/apis/apps/v1/namespaces/ns-%d/deployments/web-%d/status", "deployments", "status"},
	{"delete", "/api/v1/namespaces/ns-%d/configmaps/cm-%d", "configmaps", ""},
	{"get", "/apis/coordination.k8s.io/v1/namespaces/ns-%d/leases/lease-%d", "leases", ""},
	{"update", "/apis/coordination.k8s.io/v1/namespaces/ns-%d/leases/lease-%d", "leases", ""},
	{"get", "/apis/apps/v1", "", ""},
	{"get", "/version", "", ""},
	{"get", "/apis/example.com/v1/namespaces/ns-%d/widgets/w-%d", "widgets", ""},
}

// Write writes n events, one per request: ResponseComplete, or
// ResponseStarted for the watches (as a log ends while they are open).
// Their audit IDs are UUIDs, distinct per event.
func Write(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := range n {
		r := requestMix[i%len(requestMix)]
		uri := r.uri
		switch countVerbs(uri) {
		case 1:
			uri = fmt.Sprintf(uri, i%50)
		case 2:
			uri = fmt.Sprintf(uri, i%50, i)
		}
		objectRef := ""
		if r.resource != "" {
			objectRef = fmt.Sprintf(`"objectRef":{"resource":%q,"namespace":"ns-%d","name":"obj-%d","apiGroup":"apps","apiVersion":"v1","subresource":%q},`, r.resource, i%50, i, r.sub)
		}
		stage := "ResponseComplete"
		if r.verb == "watch" {
			stage = "ResponseStarted"
		}
		_, err := fmt.Fprintf(bw, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%08x-7d4c-4e5f-9a1b-%012x","stage":%q,"requestURI":%q,"verb":%q,"user":{"username":"system:serviceaccount:ns-%d:robot","uid":"5c3e2a1b-0f9d-4c8b-a7e6-d5c4b3a29180","groups":["system:serviceaccounts","system:serviceaccounts:ns-%d","system:authenticated"],"extra":{"authentication.kubernetes.io/pod-name":["web-%d"]}},"sourceIPs":["10.244.0.%d"],"userAgent":"manager/v0.0.0 (linux/amd64) kubernetes/$Format",%s"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-23T09:00:00.000000Z","stageTimestamp":"2026-11-23T09:00:00.001234Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"manager\" of ClusterRole \"manager\" to ServiceAccount \"robot/ns-%d\""}}`+"\n",
			i, i, stage, uri, r.verb, i%50, i%50, i%7, i%250, objectRef, i%50)
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

func countVerbs(format string) int {
	n := 0
	for i := 0; i+1 < len(format); i++ {
		if format[i] == '%' && format[i+1] == 'd' {
			n++
		}
	}
	return n
}

// BodyEvent is one audit event, as a line without its newline, of a
// ConfigMap request in namespace "ns" by user, at stage, with the request
// body as requestObject when body is set (an API server logging at Request
// level writes it on every stage but RequestReceived).
func BodyEvent(id, stage, verb, user, uri, body string) string {
	ev := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":%q,"stage":%q,"requestURI":%q,"verb":%q,"user":{"username":%q},"userAgent":"kubectl/v1.37.2","objectRef":{"resource":"configmaps","namespace":"ns","apiVersion":"v1"}`,
		id, stage, uri, verb, user)
	if stage != "RequestReceived" {
		ev += `,"responseStatus":{"metadata":{},"code":200}`
		if body != "" {
			ev += `,"requestObject":` + body
		}
	}
	return ev + "}"
}
