package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// FuzzReadRequest reads requests of any headers and body. It never panics;
// a refusal is an *Error of one of the documented statuses; a batch it
// accepts merges without panic, is built again by NewRequest, and reads back
// as the same batch.
//
// With compressed set, the body is zstd-compressed before it is sent, so
// that the fuzzer explores the delta's JSON and its check rather than
// failing zstd's checksums.
func FuzzReadRequest(f *testing.F) {
	valid := sampleBatch()
	encoded, err := coverage.Encode(valid.Delta)
	if err != nil {
		f.Fatal(err)
	}
	plain, err := json.Marshal(valid.Delta)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Source, "7", valid.Release, MediaType, encoded, false)
	f.Add(valid.Source, "7", valid.Release, MediaType, plain, true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte(`{"requests":0}`), true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte(`{"requests":2,"unknownRequests":1,"operations":{"a":{"requests":1,"byVerb":{"get":1}}},"unknown":{"GET /x":{"requests":1}},"clients":[{"pod":"p","requests":2,"unknown":1,"operations":{"a":1}},{"pod":"p"}],"tests":{"t":{"a":1},"u":null}}`), true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte(`{"requests":1,"operations":{"a":null}}`), true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte(`{"requests":2,"operations":{"a":{"requests":2}},"fields":{"a":{"bodies":2,"malformed":1,"set":{"x":1,"x.y":1},"unknown":{"z":1},"illTyped":{"x.y":1}},"b":null}}`), true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte(`{"requests":-1,"failedRequests":9223372036854775807}`), true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte(`{"clients":[{"requests":-1}],"unknown":{"":{}}}`), true)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte("\x28\xb5\x2f\xfd\x00\x58junk"), false)
	f.Add("pod-uid", "1", "1.37", MediaType, []byte{}, false)
	f.Add("", "0", "", "", []byte("{}"), false)
	f.Add("ns/pod", "01", "1 37", "application/json; charset=utf-8", encoded, false)
	f.Add("a", "18446744073709551616", "1.37", MediaType+"; v=1", encoded, false)

	statuses := map[int]bool{
		http.StatusBadRequest: true, http.StatusMethodNotAllowed: true,
		http.StatusRequestEntityTooLarge: true, http.StatusUnsupportedMediaType: true,
	}
	f.Fuzz(func(t *testing.T, source, seq, release, contentType string, body []byte, compressed bool) {
		if compressed {
			body = compress(body)
		}
		r, err := http.NewRequest(http.MethodPost, testURL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for name, value := range map[string]string{"Content-Type": contentType, HeaderSource: source, HeaderSeq: seq, HeaderRelease: release} {
			if value != "" {
				r.Header.Set(name, value)
			}
		}
		b, err := ReadRequest(r, 1<<20)
		if err != nil {
			if e, ok := errors.AsType[*Error](err); !ok || !statuses[e.Status] || e.Reason == "" {
				t.Fatalf("refused with %#v, want an *Error of a documented status", err)
			}
			return
		}
		var merged coverage.Delta
		merged.Merge(b.Delta)
		merged.Merge(b.Delta)

		again, err := NewRequest(context.Background(), testURL, b, "")
		if err != nil {
			t.Fatalf("NewRequest of an accepted batch: %v", err)
		}
		b2, err := ReadRequest(again, 1<<20)
		if err != nil {
			t.Fatalf("ReadRequest of a re-encoded batch: %v", err)
		}
		if b2.Source != b.Source || b2.Seq != b.Seq || b2.Release != b.Release || !sameDelta(t, b2.Delta, b.Delta) {
			t.Fatalf("re-encoded batch reads as %+v, want %+v", b2, b)
		}
	})
}
