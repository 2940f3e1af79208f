package coverage

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func sampleHits() []Hit {
	kubectl := Client{User: "admin", UserAgent: "kubectl/v1.33.0"}
	robot := Client{Pod: "web-1", Namespace: "shop", ServiceAccount: "robot", UserAgent: "controller/v1"}
	e2e := Client{User: "e2e", UserAgent: "e2e.test/v1.37.0 (linux/amd64) kubernetes/abc -- [sig-apps] Deployment should scale [Conformance]"}
	return []Hit{
		{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200, Client: kubectl},
		{OperationID: "listCoreV1NamespacedPod", Verb: "watch", Status: 200, Client: robot},
		{OperationID: "readCoreV1NamespacedPod", Verb: "get", Status: 404, Client: robot},
		{OperationID: "patchAppsV1NamespacedDeploymentScale", Verb: "patch", Status: 200, Client: e2e, Test: TestFromUserAgent(e2e.UserAgent)},
		{Unknown: "GET /apis/example.com/v1/namespaces/{namespace}/widgets", Verb: "list", Status: 200, Client: robot},
		{Unknown: "GET /healthz", Verb: "get", Status: 500, Client: kubectl},
	}
}

func TestDeltaAdd(t *testing.T) {
	var d Delta
	for _, h := range sampleHits() {
		d.Add(h)
	}
	if d.Requests != 6 || d.FailedRequests != 2 || d.UnknownRequests != 2 {
		t.Fatalf("requests/failed/unknown = %d/%d/%d, want 6/2/2", d.Requests, d.FailedRequests, d.UnknownRequests)
	}
	pods := d.Operations["listCoreV1NamespacedPod"]
	if pods.Requests != 2 || pods.ByVerb["watch"] != 1 || pods.ByVerb["list"] != 1 || pods.ByStatus["2xx"] != 2 {
		t.Errorf("listCoreV1NamespacedPod counts = %+v", pods)
	}
	if got := d.Operations["readCoreV1NamespacedPod"].ByStatus["4xx"]; got != 1 {
		t.Errorf("4xx of readCoreV1NamespacedPod = %d, want 1", got)
	}
	robot := d.Clients[Client{Pod: "web-1", Namespace: "shop", ServiceAccount: "robot", UserAgent: "controller/v1"}]
	if robot == nil || robot.Requests != 3 || robot.Failed != 1 || robot.Unknown != 1 || len(robot.Operations) != 2 {
		t.Errorf("robot client = %+v", robot)
	}
	test := "[sig-apps] Deployment should scale [Conformance]"
	if d.Tests[test]["patchAppsV1NamespacedDeploymentScale"] != 1 {
		t.Errorf("tests = %v, want the e2e test attributed", d.Tests)
	}
}

func TestMergeIsOrderFree(t *testing.T) {
	hits := sampleHits()
	var whole Delta
	for _, h := range hits {
		whole.Add(h)
	}
	// Split the hits over three deltas and merge them in two orders.
	parts := make([]Delta, 3)
	for i, h := range hits {
		parts[i%3].Add(h)
	}
	var forward, backward Delta
	for i := range parts {
		forward.Merge(&parts[i])
		backward.Merge(&parts[len(parts)-1-i])
	}
	for name, got := range map[string]*Delta{"forward": &forward, "backward": &backward} {
		if !reflect.DeepEqual(mustJSON(t, got), mustJSON(t, &whole)) {
			t.Errorf("%s merge differs from adding every hit:\n got %s\nwant %s", name, mustJSON(t, got), mustJSON(t, &whole))
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	var d Delta
	for _, h := range sampleHits() {
		d.AddN(h, 3)
	}
	data, err := Encode(&d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if mustJSON(t, got) != mustJSON(t, &d) {
		t.Errorf("round trip differs:\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, &d))
	}
	if !reflect.DeepEqual(got.Clients, d.Clients) {
		t.Errorf("clients differ after round trip")
	}
	if _, err := Decode([]byte("not zstd")); err == nil {
		t.Error("Decode accepted garbage")
	}
}

func TestBoundsCountOverflow(t *testing.T) {
	var d Delta
	n := MaxUnknownPaths + 10
	for i := 0; i < n; i++ {
		d.Add(Hit{Unknown: fmt.Sprintf("GET /x/%d", i), Verb: "get", Status: 200, Client: Client{UserAgent: fmt.Sprint(i)}})
	}
	if len(d.Unknown) != MaxUnknownPaths {
		t.Errorf("kept %d unknown shapes, want %d", len(d.Unknown), MaxUnknownPaths)
	}
	if d.UnknownRequests != int64(n) || d.Overflow != 10 {
		t.Errorf("unknown requests %d, overflow %d; want %d and 10", d.UnknownRequests, d.Overflow, n)
	}
}

func TestTestFromUserAgent(t *testing.T) {
	for ua, want := range map[string]string{
		"e2e.test/v1.37.0 (linux/amd64) kubernetes/abc -- [sig-node] Pods should run [Conformance]": "[sig-node] Pods should run [Conformance]",
		"e2e.test/v1.37.0 (linux/amd64) kubernetes/abc":                                             "",
		"kubectl/v1.33.0 (linux/amd64) kubernetes/abc -- [sig-x] not a test":                        "",
		"": "",
	} {
		if got := TestFromUserAgent(ua); got != want {
			t.Errorf("TestFromUserAgent(%q) = %q, want %q", ua, got, want)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 201: "2xx", 304: "3xx", 404: "4xx", 503: "5xx", 0: "other", 101: "other"} {
		if got := StatusClass(code); got != want {
			t.Errorf("StatusClass(%d) = %s, want %s", code, got, want)
		}
	}
}

func mustJSON(t *testing.T, d *Delta) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
