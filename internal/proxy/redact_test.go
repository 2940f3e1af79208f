package proxy

import (
	"bytes"
	"encoding/json"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

func TestIsSecretPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/api/v1/secrets":                          true,
		"/api/v1/namespaces/default/secrets":       true,
		"/api/v1/namespaces/default/secrets/token": true,
		"/api/v1/namespaces/default/secrets/":      true,
		"/api/v1/watch/namespaces/a/secrets":       true,
		"/api/v1/watch/secrets":                    true,
		"/api/v1//namespaces/a//secrets/x":         true,
		"/api/v1/namespaces/secrets":               false, // a namespace called "secrets"
		"/api/v1/namespaces/secrets/configmaps/x":  false,
		"/api/v1/namespaces/default/configmaps/s":  false,
		"/apis/example.com/v1/secrets":             false,
		"/api":                                     false,
		"/api/":                                    false,
		"/":                                        false,
	} {
		if got := isSecretPath(path); got != want {
			t.Errorf("isSecretPath(%q) = %v, want %v", path, got, want)
		}
	}
}

// decoded compares JSON documents regardless of key order.
func decoded(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	return v
}

func TestRedactSecretBody(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			"create",
			`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"type":"Opaque","data":{"password":"aHVudGVyMg==","user":"YQ=="},"stringData":{"token":"plain"}}`,
			`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"type":"Opaque","data":{"password":"<redacted>","user":"<redacted>"},"stringData":{"token":"<redacted>"}}`,
		},
		{"merge patch", `{"data":{"k":"dg=="},"metadata":{"labels":{"a":"b"}}}`, `{"data":{"k":"<redacted>"},"metadata":{"labels":{"a":"b"}}}`},
		{"data not a map", `{"data":"c2VjcmV0"}`, `{"data":"<redacted>"}`},
		{"null data kept", `{"data":null,"metadata":{"name":"x"}}`, `{"data":null,"metadata":{"name":"x"}}`},
		{"numbers kept exact", `{"metadata":{"generation":12345678901234567890},"data":{"a":"b"}}`, `{"metadata":{"generation":12345678901234567890},"data":{"a":"<redacted>"}}`},
		{
			"json patch",
			`[{"op":"replace","path":"/data/password","value":"c2VjcmV0"},{"op":"add","path":"/stringData","value":{"t":"plain"}},{"op":"add","path":"/metadata/labels/a","value":"kept"},{"op":"remove","path":"/data/old"},{"op":"replace","path":"/data","value":"eA=="}]`,
			`[{"op":"replace","path":"/data/password","value":"<redacted>"},{"op":"add","path":"/stringData","value":{"t":"<redacted>"}},{"op":"add","path":"/metadata/labels/a","value":"kept"},{"op":"remove","path":"/data/old"},{"op":"replace","path":"/data","value":"<redacted>"}]`,
		},
		{"json patch of the whole object", `[{"op":"replace","path":"","value":{"data":{"a":"Yg=="}}}]`, `[{"op":"replace","path":"","value":{"data":{"a":"<redacted>"}}}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactSecretBody([]byte(tc.in))
			if got == nil {
				t.Fatal("body dropped")
			}
			if g, w := mustJSON(t, decoded(t, got)), mustJSON(t, decoded(t, []byte(tc.want))); !bytes.Equal(g, w) {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if bytes.Contains(got, []byte("aHVudGVyMg")) || bytes.Contains(got, []byte("plain")) || bytes.Contains(got, []byte("c2VjcmV0")) {
				t.Errorf("secret value survived: %s", got)
			}
		})
	}
}

func TestRedactSecretBodyDropsWhatItCannotParse(t *testing.T) {
	for name, in := range map[string]string{
		"yaml apply":      "apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n",
		"protobuf":        "k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x20hunter2",
		"cbor":            "\xd9\xd9\xf7\xa1\x64data\xa1\x61a\x47hunter2",
		"truncated json":  `{"data":{"password":"aHVudGVy`,
		"two json values": `{"data":{}} {"data":{"a":"hunter2"}}`,
		"json scalar":     `"hunter2"`,
	} {
		if got := RedactSecretBody([]byte(in)); got != nil {
			t.Errorf("%s: kept %q, want it dropped", name, got)
		}
	}
}

func TestBodyForEvent(t *testing.T) {
	secret := []byte(`{"kind":"Secret","data":{"a":"aHVudGVyMg=="}}`)
	if got := bodyForEvent("/api/v1/namespaces/a/secrets", secret, false); bytes.Contains(got, []byte("aHVudGVyMg")) || got == nil {
		t.Errorf("secret body for event: %q", got)
	}
	if got := bodyForEvent("/api/v1/namespaces/a/secrets", secret[:20], true); got != nil {
		t.Errorf("truncated secret body kept: %q", got)
	}
	cm := []byte(`{"kind":"ConfigMap","data":{"a":"visible"}}`)
	got := bodyForEvent("/api/v1/namespaces/a/configmaps", cm, false)
	if !bytes.Equal(got, cm) {
		t.Errorf("configmap body changed: %q", got)
	}
	cm[0] = 'X'
	if got[0] == 'X' {
		t.Error("event body shares memory with the capture buffer")
	}
	if got := bodyForEvent("/api/v1/namespaces/a/configmaps", nil, false); got != nil {
		t.Errorf("empty body became %q", got)
	}
}

// TestSecretBodyRedactedEndToEnd checks the proxy applies redaction to the
// bodies it keeps while the upstream still receives the real data.
func TestSecretBodyRedactedEndToEnd(t *testing.T) { onEachPath(t, testSecretBodyRedactedEndToEnd) }

func testSecretBodyRedactedEndToEnd(t *testing.T, start starter) {
	received := make(chan []byte, 1)
	upstream, roots := proxytest.NewUpstream(t, httpEcho(received))
	events := proxytest.NewEventLog()
	px := proxyTo(t, start, upstream, roots, events)
	body := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"password":"hunter2"}}`
	// The API server decodes the path: %73ecrets is secrets to it, and must
	// be to the recording too.
	for _, path := range []string{"/api/v1/namespaces/default/secrets", "/api/v1/namespaces/default/%73ecrets"} {
		resp, err := px.client.Post(px.url.String()+path, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := <-received; string(got) != body {
			t.Errorf("upstream received %q, want the original body", got)
		}
	}
	events.WaitFor(t, "for both posts", func(record.Event) bool { return len(events.All()) >= 2 })
	for _, ev := range events.All() {
		if ev.Path != "/api/v1/namespaces/default/secrets" || bytes.Contains(ev.Body, []byte("hunter2")) || !bytes.Contains(ev.Body, []byte(redactedValue)) {
			t.Errorf("event of %s: body %q", ev.Path, ev.Body)
		}
	}
	if n := len(events.All()); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}
