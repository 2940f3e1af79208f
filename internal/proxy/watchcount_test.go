package proxy

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/match"
)

func TestIsWatch(t *testing.T) {
	for raw, want := range map[string]bool{
		"/api/v1/pods?watch=true":                      true,
		"/api/v1/pods?watch=1":                         true,
		"/api/v1/pods?watch=True":                      true,
		"/api/v1/pods?labelSelector=a&watch=yes":       true, // the API server reads any non-false value as true
		"/api/v1/pods?watch=false":                     false,
		"/api/v1/pods?watch=0":                         false,
		"/api/v1/pods?watch=":                          true, // only absent, "0" and "false" are false to the API server
		"/api/v1/pods?allowWatchBookmarks=true":        false,
		"/api/v1/pods":                                 false,
		"/api/v1/watch/pods":                           true,
		"/api/v1/watch/namespaces/a/pods/p":            true,
		"/apis/apps/v1/watch/deployments":              true,
		"/apis/apps/v1/namespaces/a/deployments/watch": false, // an object called "watch"
		"/api/v1/namespaces/watch/configmaps":          false,
		"/apis/example.com/v1/namespaces/a/watch/x":    false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := match.NewRequestInfo(http.MethodGet, u.Path, u.RawQuery)
		if got := isWatch(info); got != want {
			t.Errorf("isWatch(%s) = %v, want %v", raw, got, want)
		}
	}
}

// feedInPieces feeds data split every n bytes, as a network would.
func feedInPieces(c eventCounter, data []byte, n int) {
	for len(data) > 0 {
		k := min(n, len(data))
		c.feed(data[:k])
		data = data[k:]
	}
}

func TestJSONEventCounter(t *testing.T) {
	stream := `{"type":"ADDED","object":{"kind":"ConfigMap","data":{"a":"}{\"\\","b":"[x]"}}}` + "\n" +
		`{"type":"MODIFIED","object":{"items":[{"a":1},{"b":[2,3]}]}}` + "\n" +
		// ?pretty=true streams spread one event over many lines.
		"{\n  \"type\": \"DELETED\",\n  \"object\": {\n    \"kind\": \"ConfigMap\"\n  }\n}\n"
	for _, piece := range []int{1, 2, 7, len(stream)} {
		c := newEventCounter("application/json", "")
		feedInPieces(c, []byte(stream), piece)
		if got := c.count(); got != 3 {
			t.Errorf("pieces of %d: counted %d events, want 3", piece, got)
		}
	}
}

func TestLengthPrefixedCounter(t *testing.T) {
	var stream []byte
	for _, size := range []int{0, 1, 300, 70000} {
		stream = binary.BigEndian.AppendUint32(stream, uint32(size))
		stream = append(stream, strings.Repeat("\x00", size)...)
	}
	for _, piece := range []int{1, 3, 4096, len(stream)} {
		c := newEventCounter("application/vnd.kubernetes.protobuf;stream=watch", "")
		feedInPieces(c, stream, piece)
		if got := c.count(); got != 4 {
			t.Errorf("pieces of %d: counted %d frames, want 4", piece, got)
		}
	}
}

func TestNewEventCounterSkipsWhatItCannotCount(t *testing.T) {
	for _, tc := range []struct{ contentType, encoding string }{
		{"application/json", "gzip"},
		{"application/cbor-seq", ""},
		{"application/vnd.kubernetes.protobuf", ""}, // a single object, not a stream
		{"text/plain", ""},
	} {
		if c := newEventCounter(tc.contentType, tc.encoding); c != nil {
			t.Errorf("%q %q: got a %T", tc.contentType, tc.encoding, c)
		}
	}
	if newEventCounter("application/json; charset=utf-8", "identity") == nil {
		t.Error("no counter for JSON with parameters")
	}
}
