package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

const testURL = "https://collector.example:8443" + Path

// sampleDelta has every part of a delta: operations, unknown shapes,
// clients, e2e tests and the fields of a body.
func sampleDelta() *coverage.Delta {
	d := &coverage.Delta{}
	kubectl := coverage.Client{Pod: "web-0", Namespace: "shop", ServiceAccount: "web", UserAgent: "kubectl/v1.37.0"}
	e2e := coverage.Client{User: "admin", UserAgent: "e2e.test/v1.37.0 -- [sig-apps] Deployment works"}
	d.Add(coverage.Hit{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200, Client: kubectl})
	d.Add(coverage.Hit{OperationID: "listCoreV1NamespacedPod", Verb: "watch", Status: 200, Client: kubectl})
	d.Add(coverage.Hit{OperationID: "createAppsV1NamespacedDeployment", Verb: "create", Status: 201, Client: e2e, Test: "[sig-apps] Deployment works"})
	d.Add(coverage.Hit{Verb: "get", Status: 404, Unknown: "GET /apis/example.com/v1/widgets", Client: kubectl})
	d.AddFields("createAppsV1NamespacedDeployment", fields.Result{
		Set:      []string{"metadata", "metadata.name", "spec", "spec.replicas"},
		Unknown:  []string{"spec.replica"},
		IllTyped: []string{"spec.replicas"},
	}, 1)
	return d
}

func sampleBatch() Batch {
	return Batch{Source: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Seq: 7, Release: "1.37", Delta: sampleDelta()}
}

// sameDelta says whether two deltas hold the same counts. The codec does
// not tell a nil map from an empty one, so neither does this.
func sameDelta(t testing.TB, a, b *coverage.Delta) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func TestRoundTrip(t *testing.T) {
	want := sampleBatch()
	req, err := NewRequest(context.Background(), testURL, want, "the-token")
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != http.MethodPost || req.URL.String() != testURL {
		t.Errorf("request %s %s, want POST %s", req.Method, req.URL, testURL)
	}
	if got := Token(req); got != "the-token" {
		t.Errorf("Token = %q, want the-token", got)
	}
	got, err := ReadRequest(req, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != want.Source || got.Seq != want.Seq || got.Release != want.Release {
		t.Errorf("read %s/%d/%s, want %s/%d/%s", got.Source, got.Seq, got.Release, want.Source, want.Seq, want.Release)
	}
	if !sameDelta(t, got.Delta, want.Delta) {
		t.Errorf("read delta %+v, want %+v", got.Delta, want.Delta)
	}
}

func TestNewRequestWithoutToken(t *testing.T) {
	req, err := NewRequest(context.Background(), testURL, sampleBatch(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := req.Header["Authorization"]; ok || Token(req) != "" {
		t.Errorf("Authorization %q sent without a token", req.Header.Get("Authorization"))
	}
}

func TestToken(t *testing.T) {
	for header, want := range map[string]string{
		"":              "",
		"Bearer abc":    "abc",
		"bearer abc":    "abc",
		"Bearer  abc  ": "abc",
		"Basic abc":     "",
		"Bearer":        "",
	} {
		r, _ := http.NewRequest(http.MethodPost, testURL, nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		if got := Token(r); got != want {
			t.Errorf("Token(Authorization: %q) = %q, want %q", header, got, want)
		}
	}
}

func TestNewRequestRefusesWhatTheCollectorWould(t *testing.T) {
	for name, change := range map[string]func(*Batch){
		"no source":      func(b *Batch) { b.Source = "" },
		"seq 0":          func(b *Batch) { b.Seq = 0 },
		"no release":     func(b *Batch) { b.Release = "" },
		"no delta":       func(b *Batch) { b.Delta = nil },
		"negative count": func(b *Batch) { b.Delta.Requests = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			b := sampleBatch()
			change(&b)
			_, err := NewRequest(context.Background(), testURL, b, "")
			if e, ok := errors.AsType[*Error](err); !ok || e.Status != http.StatusBadRequest {
				t.Errorf("NewRequest: %v, want an *Error with status 400", err)
			}
		})
	}
}

// request builds a batch request by hand, so that it can be wrong.
func request(method string, header map[string]string, body []byte) *http.Request {
	r, _ := http.NewRequest(method, testURL, bytes.NewReader(body))
	r.Header.Set("Content-Type", MediaType)
	r.Header.Set(HeaderSource, "pod-uid")
	r.Header.Set(HeaderSeq, "1")
	r.Header.Set(HeaderRelease, "1.37")
	for k, v := range header {
		if v == "-" {
			r.Header.Del(k)
			continue
		}
		r.Header.Set(k, v)
	}
	return r
}

func encode(t testing.TB, d *coverage.Delta) []byte {
	t.Helper()
	body, err := coverage.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// compress compresses as coverage.Encode does, whatever raw is.
func compress(raw []byte) []byte { return zstdEncoder().EncodeAll(raw, nil) }

var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	return enc
})

func TestReadRequestAccepts(t *testing.T) {
	body := encode(t, sampleDelta())
	for name, header := range map[string]map[string]string{
		"media type with a parameter":  {"Content-Type": MediaType + "; v=1"},
		"media type in capitals":       {"Content-Type": strings.ToUpper(MediaType)},
		"largest seq":                  {HeaderSeq: "18446744073709551615"},
		"release with a patch version": {HeaderRelease: "v1.37.2+k3s1"},
		"source of 128 bytes":          {HeaderSource: strings.Repeat("a", 128)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadRequest(request(http.MethodPost, header, body), 0); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("empty delta", func(t *testing.T) {
		if _, err := ReadRequest(request(http.MethodPost, nil, encode(t, &coverage.Delta{})), 0); err != nil {
			t.Error(err)
		}
	})
}

func TestReadRequestRefuses(t *testing.T) {
	valid := encode(t, sampleDelta())
	withDelta := func(change func(d *coverage.Delta)) []byte {
		d := sampleDelta()
		change(d)
		return encode(t, d)
	}
	manyUnknown := &coverage.Delta{Unknown: map[string]*coverage.Counts{}}
	for i := range coverage.MaxUnknownPaths + 1 {
		manyUnknown.Unknown[fmt.Sprint("GET /x/", i)] = &coverage.Counts{Requests: 1}
		manyUnknown.Requests++
		manyUnknown.UnknownRequests++
	}
	manyClients := &coverage.Delta{Clients: map[coverage.Client]*coverage.ClientCounts{}}
	for i := range coverage.MaxClients + 1 {
		manyClients.Clients[coverage.Client{Pod: fmt.Sprint("p", i)}] = &coverage.ClientCounts{}
	}

	cases := []struct {
		name   string
		method string
		header map[string]string
		body   []byte
		status int
		reason Reason
	}{
		{"GET", http.MethodGet, nil, valid, 405, ReasonMethod},
		{"no media type", "", map[string]string{"Content-Type": "-"}, valid, 415, ReasonMediaType},
		{"JSON", "", map[string]string{"Content-Type": "application/json"}, valid, 415, ReasonMediaType},
		{"malformed media type", "", map[string]string{"Content-Type": MediaType + ";;"}, valid, 415, ReasonMediaType},
		{"no source", "", map[string]string{HeaderSource: "-"}, valid, 400, ReasonHeader},
		{"empty source", "", map[string]string{HeaderSource: ""}, valid, 400, ReasonHeader},
		{"source too long", "", map[string]string{HeaderSource: strings.Repeat("a", 129)}, valid, 400, ReasonHeader},
		{"source with a slash", "", map[string]string{HeaderSource: "ns/pod"}, valid, 400, ReasonHeader},
		{"no seq", "", map[string]string{HeaderSeq: "-"}, valid, 400, ReasonHeader},
		{"seq 0", "", map[string]string{HeaderSeq: "0"}, valid, 400, ReasonHeader},
		{"negative seq", "", map[string]string{HeaderSeq: "-1"}, valid, 400, ReasonHeader},
		{"seq with a sign", "", map[string]string{HeaderSeq: "+1"}, valid, 400, ReasonHeader},
		{"seq with a leading zero", "", map[string]string{HeaderSeq: "01"}, valid, 400, ReasonHeader},
		{"seq beyond uint64", "", map[string]string{HeaderSeq: "18446744073709551616"}, valid, 400, ReasonHeader},
		{"seq not a number", "", map[string]string{HeaderSeq: "one"}, valid, 400, ReasonHeader},
		{"no release", "", map[string]string{HeaderRelease: "-"}, valid, 400, ReasonHeader},
		{"release too long", "", map[string]string{HeaderRelease: strings.Repeat("1", 65)}, valid, 400, ReasonHeader},
		{"release with a slash", "", map[string]string{HeaderRelease: "1/37"}, valid, 400, ReasonHeader},
		{"no body", "", nil, nil, 400, ReasonBody},
		{"not zstd", "", nil, []byte("{}"), 400, ReasonBody},
		{"truncated", "", nil, valid[:len(valid)-3], 400, ReasonBody},
		{"not JSON", "", nil, compress([]byte("requests: 1")), 400, ReasonBody},
		{"JSON of another shape", "", nil, compress([]byte(`{"requests":"one"}`)), 400, ReasonBody},
		{"negative total", "", nil, withDelta(func(d *coverage.Delta) { d.Requests = -1 }), 400, ReasonDelta},
		{"negative overflow", "", nil, withDelta(func(d *coverage.Delta) { d.Overflow = -1 }), 400, ReasonDelta},
		{"more failed than requests", "", nil, withDelta(func(d *coverage.Delta) { d.FailedRequests = d.Requests + 1 }), 400, ReasonDelta},
		{"totals do not add up", "", nil, withDelta(func(d *coverage.Delta) { d.Requests++ }), 400, ReasonDelta},
		{"totals overflow", "", nil, compress([]byte(`{"requests":1,"operations":{"a":{"requests":9223372036854775807},"b":{"requests":9223372036854775807}}}`)), 400, ReasonDelta},
		{"null operation", "", nil, compress([]byte(`{"requests":0,"operations":{"a":null}}`)), 400, ReasonDelta},
		{"empty operation ID", "", nil, compress([]byte(`{"requests":1,"operations":{"":{"requests":1}}}`)), 400, ReasonDelta},
		{"operation ID too long", "", nil, withDelta(func(d *coverage.Delta) {
			d.Operations[strings.Repeat("x", maxOperationID+1)] = &coverage.Counts{}
		}), 400, ReasonDelta},
		{"negative verb count", "", nil, withDelta(func(d *coverage.Delta) { d.Operations["listCoreV1NamespacedPod"].ByVerb["list"] = -1 }), 400, ReasonDelta},
		{"null unknown shape", "", nil, compress([]byte(`{"requests":0,"unknown":{"GET /x":null}}`)), 400, ReasonDelta},
		{"more in shapes than unknown", "", nil, withDelta(func(d *coverage.Delta) { d.Unknown["GET /y"] = &coverage.Counts{Requests: 1} }), 400, ReasonDelta},
		{"too many unknown shapes", "", nil, encode(t, manyUnknown), 400, ReasonDelta},
		{"too many clients", "", nil, encode(t, manyClients), 400, ReasonDelta},
		{"negative client count", "", nil, withDelta(func(d *coverage.Delta) {
			for _, c := range d.Clients {
				c.Failed = -1
			}
		}), 400, ReasonDelta},
		{"negative client operation", "", nil, withDelta(func(d *coverage.Delta) {
			for _, c := range d.Clients {
				c.Operations = map[string]int64{"listCoreV1NamespacedPod": -1}
			}
		}), 400, ReasonDelta},
		{"empty test operation ID", "", nil, withDelta(func(d *coverage.Delta) { d.Tests["t"] = map[string]int64{"": 1} }), 400, ReasonDelta},
		{"more writes than requests", "", nil, withWrites(t, d0(), func(w []coverage.Write) []coverage.Write {
			return append(w, slices.Repeat(w[:1], 10)...)
		}), 400, ReasonDelta},
		{"write without ID", "", nil, withWrites(t, d0(), func(w []coverage.Write) []coverage.Write { w[0].ID = ""; return w }), 400, ReasonDelta},
		{"write ID too long", "", nil, withWrites(t, d0(), func(w []coverage.Write) []coverage.Write {
			w[0].ID = strings.Repeat("i", coverage.MaxWriteIDBytes+1)
			return w
		}), 400, ReasonDelta},
		{"write of a read verb", "", nil, withWrites(t, d0(), func(w []coverage.Write) []coverage.Write { w[0].Verb = "get"; return w }), 400, ReasonDelta},
		{"write without resource", "", nil, withWrites(t, d0(), func(w []coverage.Write) []coverage.Write { w[0].Resource = ""; return w }), 400, ReasonDelta},
		{"write without status", "", nil, withWrites(t, d0(), func(w []coverage.Write) []coverage.Write { w[0].Status = 0; return w }), 400, ReasonDelta},
		{"a Secret's body", "", nil, compress([]byte(`{"requests":1,"operations":{"createCoreV1NamespacedSecret":{"requests":1}},` +
			`"writes":[{"id":"a","verb":"create","resource":"secrets","name":"s","status":201,"request":{"data":{"k":"c2VjcmV0"}}}]}`)), 400, ReasonDelta},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := request(method, tc.header, tc.body)
			if tc.body == nil {
				r.Body = nil
			}
			_, err := ReadRequest(r, 0)
			e, ok := errors.AsType[*Error](err)
			if !ok || e.Status != tc.status || e.Reason != tc.reason {
				t.Errorf("ReadRequest: %v, want an *Error with status %d and reason %s", err, tc.status, tc.reason)
			}
		})
	}
}

// d0 is a delta with one request, a write the test changes.
func d0() *coverage.Delta {
	d := &coverage.Delta{}
	d.Add(coverage.Hit{OperationID: "createCoreV1NamespacedConfigMap", Verb: "create", Status: 201})
	d.AddWrite(coverage.Write{ID: "1", Verb: "create", Resource: "configmaps", Namespace: "n", Name: "c", Status: 201,
		Request: []byte(`{"metadata":{"name":"c"}}`)})
	return d
}

// withWrites encodes d with its writes changed, as a sidecar could not have
// recorded them.
func withWrites(t *testing.T, d *coverage.Delta, change func([]coverage.Write) []coverage.Write) []byte {
	t.Helper()
	d.Writes = change(d.Writes)
	return encode(t, d)
}

func TestReadRequestAcceptsWrites(t *testing.T) {
	r := request(http.MethodPost, nil, encode(t, d0()))
	b, err := ReadRequest(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Delta.Writes) != 1 || string(b.Delta.Writes[0].Request) != `{"metadata":{"name":"c"}}` {
		t.Errorf("writes %+v", b.Delta.Writes)
	}
}

func TestReadRequestReadsAtMostMaxBytes(t *testing.T) {
	body := encode(t, sampleDelta())
	limit := int64(len(body))
	if _, err := ReadRequest(request(http.MethodPost, nil, body), limit); err != nil {
		t.Fatalf("a body of exactly the limit: %v", err)
	}

	declared := request(http.MethodPost, nil, body)
	declared.ContentLength = limit + 1
	r := &countingReader{r: declared.Body}
	declared.Body = io.NopCloser(r)
	if _, err := ReadRequest(declared, limit); StatusOf(err) != http.StatusRequestEntityTooLarge || r.n != 0 {
		t.Errorf("Content-Length above the limit: %v after reading %d bytes, want 413 before reading", err, r.n)
	}

	// A body without Content-Length (chunked) is read up to one byte more
	// than the limit, never further.
	long := append(bytes.Clone(body), make([]byte, 1<<20)...)
	chunked := request(http.MethodPost, nil, nil)
	chunked.ContentLength = -1
	r = &countingReader{r: bytes.NewReader(long)}
	chunked.Body = io.NopCloser(r)
	if _, err := ReadRequest(chunked, limit); StatusOf(err) != http.StatusRequestEntityTooLarge || r.n > limit+1 {
		t.Errorf("long body: %v after reading %d bytes, want 413 after at most %d", err, r.n, limit+1)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestFullDeltaFitsTheDefaultLimit backs DefaultMaxBytes: a delta at every
// bound, with realistic clients and shapes, encodes to a tenth of it.
func TestFullDeltaFitsTheDefaultLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	d := &coverage.Delta{}
	for i := range coverage.MaxClients {
		client := coverage.Client{
			Pod: "worker-" + hex(10) + "-" + hex(5), Namespace: fmt.Sprint("team-", i%50), ServiceAccount: "worker",
			UserAgent: "worker/v" + hex(6) + " (linux/amd64) kubernetes/" + hex(7),
		}
		for op := range 20 {
			d.Add(coverage.Hit{OperationID: fmt.Sprint("readSomethingV1NamespacedResource", (i+op*37)%1500), Verb: "get", Status: 200, Client: client})
		}
		d.Add(coverage.Hit{Verb: "get", Status: 404, Unknown: "GET /apis/" + hex(12) + ".example.com/v1/namespaces/{namespace}/widgets/{name}", Client: client})
	}
	body := encode(t, d)
	t.Logf("a full delta of %d requests encodes to %d bytes", d.Requests, len(body))
	if int64(len(body)) > DefaultMaxBytes/10 {
		t.Errorf("a full delta encodes to %d bytes, above a tenth of DefaultMaxBytes (%d)", len(body), DefaultMaxBytes)
	}
	if err := checkDelta(d); err != nil {
		t.Errorf("a recorded delta does not pass the check: %v", err)
	}
}

func TestCheckedSum(t *testing.T) {
	var s sum
	s.add(math.MaxInt64)
	s.add(0)
	if s.overflow || s.n != math.MaxInt64 {
		t.Fatalf("sum %+v", s)
	}
	if s.add(1); !s.overflow {
		t.Error("no overflow noticed")
	}
}
