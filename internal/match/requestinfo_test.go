package match

import (
	"testing"
)

var differentialMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "get", "Post", "FOO", ""}

var differentialPaths = []string{
	"", "/", "//", "/healthz", "/healthz/ready", "/livez", "/metrics", "/version", "/version/",
	"/openapi/v2", "/openapi/v3", "/openapi/v3/apis/apps/v1", "/.well-known/openid-configuration", "/openid/v1/jwks",
	"/logs", "/logs/", "/logs/kube-apiserver.log", "/logs/a/b",
	"/api", "/api/", "/api/v1", "/api/v1/", "/apis", "/apis/", "/apis/apps", "/apis/apps/", "/apis/apps/v1", "/apis/apps/v1/",
	"/api/v1/pods", "/api/v1/pods/", "//api//v1//pods", "/api/v1/namespaces", "/api/v1/namespaces/",
	"/api/v1/namespaces/x", "/api/v1/namespaces/x/", "/api/v1/namespaces/x/status", "/api/v1/namespaces/x/finalize",
	"/api/v1/namespaces/x/pods", "/api/v1/namespaces/x/pods/p", "/api/v1/namespaces/x/pods/p/status",
	"/api/v1/namespaces/x/pods/p/log", "/api/v1/namespaces/x/pods/p/exec", "/api/v1/namespaces/x/pods/p/attach",
	"/api/v1/namespaces/x/pods/p/portforward", "/api/v1/namespaces/x/pods/p/proxy", "/api/v1/namespaces/x/pods/p/proxy/",
	"/api/v1/namespaces/x/pods/p/proxy/a/b/c", "/api/v1/namespaces/x/services/s:80/proxy/some/deep/path",
	"/api/v1/nodes/n/proxy/metrics", "/api/v1/namespaces/x/pods/p/eviction", "/api/v1/namespaces/x/pods/p/binding",
	"/api/v1/namespaces/x/serviceaccounts/sa/token", "/api/v1/namespaces/x/pods/p/ephemeralcontainers",
	"/api/v1/namespaces/x/pods/p/resize", "/apis/apps/v1/namespaces/x/deployments/d/scale",
	"/api/v1/watch", "/api/v1/watch/", "/api/v1/watch/pods", "/api/v1/watch/namespaces", "/api/v1/watch/namespaces/x",
	"/api/v1/watch/namespaces/x/pods", "/api/v1/watch/namespaces/x/pods/p", "/apis/apps/v1/watch/namespaces/x/deployments/d",
	"/api/v1/proxy", "/api/v1/proxy/nodes/n", "/api/v1/proxy/namespaces/x/pods/p/a/b", "/api/v1/proxy/namespaces/x/services/s",
	"/apis/apps/v1/deployments", "/apis/apps/v1/namespaces/x/deployments", "/apis/apps/v1/namespaces/x/deployments/d/status",
	"/apis/example.com/v1/widgets", "/apis/example.com/v1/namespaces/x/widgets/w/a/b/c/d/e/f",
	"/api/v1/namespaces/status", "/api/v1/namespaces/status/status", "/api/v1/namespaces/x/finalize/y",
	"/api/v1/namespaces/namespaces/namespaces/namespaces", "/api/v1/watch/watch/watch", "/api/v1/proxy/proxy",
	"/apis/a/b/c/d/e/f/g/h/i/j/k/l", "/api/a/b/c/d/e/f/g/h/i/j/k/l", "/apis/g/v/watch/namespaces/ns/r/n/s/t",
	"/apis/g/v/proxy/namespaces/ns/r/n/s/t", "/api/v1/namespaces//pods", "/api/v1//", "/ api/v1/pods", "/API/v1/pods",
}

var differentialQueries = []string{
	"", "watch=true", "watch=1", "watch=0", "watch=false", "watch=FALSE", "watch=False", "watch=", "watch", "watch=yes",
	"watch=true&resourceVersion=1", "resourceVersion=1&watch=true", "watch=false&watch=true", "watch=true&watch=false",
	"watch=%66alse", "wat%63h=true", "watch=%zz&watch=true", "watch=true;x=1", "x=1;watch=true&watch=0", "watch=fal%C5%BFe",
	"watch=fal%C5%BFe&limit=x", "watch=fal%C5%BFe&fieldSelector=metadata.name%3Dp", "watch=+0", "watch=0+",
	"fieldSelector=metadata.name%3Dp", "fieldSelector=metadata.name=p", "fieldSelector=metadata.name%3D%3Dp",
	"fieldSelector=metadata.name%21%3Dp", "fieldSelector=metadata.name%3Dp%2Cmetadata.name%3Dq",
	"fieldSelector=metadata.name%3Dq%2Cmetadata.name%3Dp", "fieldSelector=metadata.name%3D..", "fieldSelector=metadata.name%3Da%2Fb",
	"fieldSelector=metadata.name%3Da%25b", "fieldSelector=metadata.name%3D", "fieldSelector=spec.nodeName%3Dn",
	"fieldSelector=metadata.name%3Dp&watch=true", "fieldSelector=metadata.name%3Dp&labelSelector=a%3Db",
	"fieldSelector=metadata.name%3Dp&labelSelector=%21%21", "fieldSelector=metadata.name%3Dp&limit=abc",
	"fieldSelector=metadata.name%3Dp&timeoutSeconds=1.5", "fieldSelector=metadata.name%3Dp&limit=500&timeoutSeconds=30",
	"fieldSelector=metadata.name", "fieldSelector=metadata.name%3Da%5C%2Cb", "fieldSelector=metadata.name%3Da%5C",
	"fieldSelector=metadata.namespace%3Dx", "fieldSelector=metadata.name%3Dp&fieldSelector=metadata.name%3Dq",
	"fieldSelector=%zz&fieldSelector=metadata.name%3Dq", "labelSelector=app%3Dweb&limit=500", "limit=abc&watch=true",
	"limit=abc&watch=fal%C5%BFe", "allowWatchBookmarks=true&watch=true&timeoutSeconds=300", "sendInitialEvents=true&watch=1",
	"command=ls&command=-l&stdout=true",
	"fieldSelector=metadata.name%3Dp&limit=", "fieldSelector=metadata.name%3Dp&timeoutSeconds=", "fieldSelector=metadata.name%3Dp&limit=%2B5",
	"fieldSelector=metadata.name%3Dp&limit=-1", "fieldSelector=metadata.name%3Dp&limit=99999999999999999999", "fieldSelector=metadata.name%3Dp&limit=0x10",
	"fieldSelector=metadata.name%3Dp&limit=x&limit=1", "fieldSelector=metadata.name%3Dp&limit=1&limit=x", "fieldSelector=metadata.name%3Dp&labelSelector=",
	"fieldSelector=metadata.name%3Dp&labelSelector=a+in+(b,c)", "fieldSelector=metadata.name%3Dp&labelSelector=a%3D%3D%3D",
	"fieldSelector=metadata.name%3Dp&resourceVersionMatch=nonsense&continue=x", "fieldSelector=metadata.name%3Dp&watch=", "fieldSelector=metadata.name%3Dp&watch=FALSE",
	"fieldSelector=metadata.name%3Dp&watch=fal%C5%BFe&limit=1", "fieldSelector=metadata.name%3Dp&sendInitialEvents=x&allowWatchBookmarks=",
	"fieldSelector=metadata.name%3Dp&timeoutSeconds=%2010", "fieldSelector=&watch=1", "fieldSelector=metadata.name%3D%3Dp%2Cx%3Dy", "&&&", "=", "=&watch=true", "%", "watch=%", "fieldSelector=metadata.name%3Dp%",
}

// TestRequestInfoMatchesFactory is the differential test: every
// combination of the tables above must give the factory's answer.
func TestRequestInfoMatchesFactory(t *testing.T) {
	for _, method := range differentialMethods {
		for _, path := range differentialPaths {
			for _, query := range differentialQueries {
				checkAgainstFactory(t, method, path, query)
			}
		}
	}
}

// TestRequestInfoCases spells out the factory's rules on typical requests.
func TestRequestInfoCases(t *testing.T) {
	tests := []struct {
		method, path, query string
		want                RequestInfo
		wantOK              bool
	}{
		{"GET", "/api/v1/namespaces/default/pods", "watch=true&resourceVersion=1", RequestInfo{IsResourceRequest: true, Verb: "watch", APIPrefix: "api", APIVersion: "v1", Namespace: "default", Resource: "pods"}, true},
		{"DELETE", "/api/v1/namespaces/x/pods", "", RequestInfo{IsResourceRequest: true, Verb: "deletecollection", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "pods"}, true},
		{"GET", "/api/v1/namespaces/x", "", RequestInfo{IsResourceRequest: true, Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "namespaces", Name: "x"}, true},
		{"PUT", "/api/v1/namespaces/x/finalize", "", RequestInfo{IsResourceRequest: true, Verb: "update", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "namespaces", Name: "x", Subresource: "finalize"}, true},
		{"GET", "/api/v1/namespaces/x/pods", "fieldSelector=metadata.name%3Dp", RequestInfo{IsResourceRequest: true, Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "pods", Name: "p"}, true},
		{"GET", "/api/v1/namespaces/x/pods", "fieldSelector=metadata.name%3Dp&limit=x", RequestInfo{IsResourceRequest: true, Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "pods"}, true},
		{"GET", "/api/v1/namespaces/x/services/s:80/proxy/a/b", "", RequestInfo{IsResourceRequest: true, Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "services", Name: "s:80", Subresource: "proxy"}, true},
		{"GET", "/api/v1/proxy/namespaces/x/services/s/a", "", RequestInfo{IsResourceRequest: true, Verb: "proxy", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "services", Name: "s"}, true},
		{"GET", "/api/v1/watch/namespaces/x/pods", "", RequestInfo{IsResourceRequest: true, Verb: "watch", APIPrefix: "api", APIVersion: "v1", Namespace: "x", Resource: "pods"}, true},
		{"GET", "/apis/apps/v1", "", RequestInfo{Verb: "get", APIPrefix: "apis"}, true},
		{"HEAD", "/healthz", "", RequestInfo{Verb: "head"}, true},
		{"OPTIONS", "/api/v1/pods", "", RequestInfo{IsResourceRequest: true, APIPrefix: "api", APIVersion: "v1", Resource: "pods"}, true},
		{"GET", "/api/v1/watch", "", RequestInfo{IsResourceRequest: true, Verb: "get", APIPrefix: "api", APIVersion: "v1"}, false},
	}
	for _, tt := range tests {
		tt.want.Path = tt.path
		got, ok := NewRequestInfo(tt.method, tt.path, tt.query)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s %s?%s:\n got  %+v ok=%v\n want %+v ok=%v", tt.method, tt.path, tt.query, got, ok, tt.want, tt.wantOK)
		}
		checkAgainstFactory(t, tt.method, tt.path, tt.query)
	}
}
