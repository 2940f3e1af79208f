package h2

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"apisnoop.dev/kube-apisnoop/internal/passive"
)

// The recorder is the test's passive.Begin and Exchange: it logs every call
// in order, checks the order the Exchange contract promises, and merges
// consecutive body calls of one exchange into one entry, so that the log
// does not depend on how the bytes were split.

type event struct {
	id   int // 0 for entries that belong to no exchange
	what string
	text string
	body []byte
}

type recorder struct {
	events    []event
	exchanges []*exchange
	problems  []string
	// skip makes Begin return nil for the requests it matches.
	skip func(passive.Request) bool
}

type exchange struct {
	rec          *recorder
	id           int
	req          passive.Request
	requestBody  []byte
	response     *passive.Response
	responseBody []byte
	// ends counts End and Refused calls.
	ends     int
	complete bool
}

func (r *recorder) begin(req passive.Request) passive.Exchange {
	if r.skip != nil && r.skip(req) {
		r.events = append(r.events, event{what: "skipped", text: requestText(req)})
		return nil
	}
	x := &exchange{rec: r, id: len(r.exchanges) + 1, req: req}
	r.exchanges = append(r.exchanges, x)
	r.events = append(r.events, event{id: x.id, what: "begin", text: requestText(req)})
	return x
}

func (r *recorder) note(what string) { r.events = append(r.events, event{what: what}) }

func (r *recorder) body(id int, what string, p []byte) {
	if n := len(r.events); n > 0 && r.events[n-1].id == id && r.events[n-1].what == what {
		r.events[n-1].body = append(r.events[n-1].body, p...)
		return
	}
	r.events = append(r.events, event{id: id, what: what, body: bytes.Clone(p)})
}

func (x *exchange) problem(format string, args ...any) {
	x.rec.problems = append(x.rec.problems, fmt.Sprintf("#%d: ", x.id)+fmt.Sprintf(format, args...))
}

func (x *exchange) RequestBody(p []byte) {
	if x.ends > 0 {
		x.problem("RequestBody after its end")
	}
	if len(p) == 0 {
		x.problem("empty RequestBody")
	}
	x.requestBody = append(x.requestBody, p...)
	x.rec.body(x.id, "request body", p)
}

func (x *exchange) Response(r passive.Response) {
	if x.ends > 0 {
		x.problem("Response after its end")
	}
	if x.response != nil {
		x.problem("second Response")
	}
	x.response = &r
	x.rec.events = append(x.rec.events, event{id: x.id, what: "response", text: responseText(r)})
}

func (x *exchange) ResponseBody(p []byte) {
	if x.ends > 0 {
		x.problem("ResponseBody after its end")
	}
	if x.response == nil {
		x.problem("ResponseBody before Response")
	}
	if len(p) == 0 {
		x.problem("empty ResponseBody")
	}
	x.responseBody = append(x.responseBody, p...)
	x.rec.body(x.id, "response body", p)
}

func (x *exchange) End(complete bool) {
	if x.ends > 0 {
		x.problem("End after its end")
	}
	x.ends++
	x.complete = complete
	x.rec.events = append(x.rec.events, event{id: x.id, what: "end", text: fmt.Sprint(complete)})
}

func (x *exchange) Refused() {
	if x.ends > 0 {
		x.problem("Refused after its end")
	}
	x.ends++
	x.rec.events = append(x.rec.events, event{id: x.id, what: "refused"})
}

func requestText(q passive.Request) string {
	return fmt.Sprintf("%s %q query=%q ua=%q ct=%q upgrade=%v", q.Method, q.Path, q.RawQuery, q.UserAgent, q.ContentType, q.Upgrade)
}

func responseText(r passive.Response) string {
	return fmt.Sprintf("%d ct=%q ce=%q", r.Status, r.ContentType, r.ContentEncoding)
}

func bodyText(b []byte) string {
	if len(b) <= 48 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes crc %08x", len(b), crc32.ChecksumIEEE(b))
}

// lines renders the log for comparison.
func (r *recorder) lines() []string {
	var out []string
	for _, e := range r.events {
		line := e.what
		if e.text != "" {
			line += " " + e.text
		}
		if e.body != nil {
			line += " " + bodyText(e.body)
		}
		if e.id > 0 {
			line = fmt.Sprintf("#%d %s", e.id, line)
		}
		out = append(out, line)
	}
	return out
}

// verify reports broken Exchange contracts; after Close every exchange
// must have ended exactly once, by End or Refused.
func (r *recorder) verify(t testing.TB, label string) {
	t.Helper()
	for _, p := range r.problems {
		t.Errorf("%s: %s", label, p)
	}
	for _, x := range r.exchanges {
		if x.ends != 1 {
			t.Errorf("%s: exchange #%d (%s) ended %d times", label, x.id, requestText(x.req), x.ends)
		}
	}
}

// Expected log lines.

func beginLine(id int, method, path, query, ua, ct string, upgrade bool) string {
	return fmt.Sprintf("#%d begin %s", id, requestText(passive.Request{Method: method, Path: path, RawQuery: query, UserAgent: ua, ContentType: ct, Upgrade: upgrade}))
}

func responseLine(id, status int, ct, ce string) string {
	return fmt.Sprintf("#%d response %s", id, responseText(passive.Response{Status: status, ContentType: ct, ContentEncoding: ce}))
}

func requestBodyLine(id int, b string) string {
	return fmt.Sprintf("#%d request body %s", id, bodyText([]byte(b)))
}

func responseBodyLine(id int, b string) string {
	return fmt.Sprintf("#%d response body %s", id, bodyText([]byte(b)))
}

func endLine(id int, complete bool) string { return fmt.Sprintf("#%d end %v", id, complete) }

func refusedLine(id int) string { return fmt.Sprintf("#%d refused", id) }

// A segment is one piece of a conversation: bytes one side sent, in the
// order the relay would see them.
type segment struct {
	client bool
	b      []byte
}

// give hands p to the scanner as bytes the client sent, or the server.
func give(s *Scanner, client bool, p []byte) {
	if client {
		s.Client(p)
	} else {
		s.Server(p)
	}
}

// feed runs a conversation through a new scanner, handing each segment
// over in the pieces split returns, and closes the scanner at the end.
func feed(segs []segment, split func([]byte) [][]byte, skip func(passive.Request) bool) (*recorder, error) {
	rec := &recorder{skip: skip}
	s := New(rec.begin)
	for _, seg := range segs {
		for _, piece := range split(seg.b) {
			give(s, seg.client, piece)
		}
	}
	rec.note("close")
	s.Close()
	return rec, s.Err()
}

func whole(b []byte) [][]byte { return [][]byte{b} }

func byteByByte(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// randomSplit cuts bytes into pieces of mixed sizes: mostly tiny ones, to
// land inside frame headers and pad lengths, and some large ones.
func randomSplit(seed uint64) func([]byte) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	return func(b []byte) [][]byte {
		var out [][]byte
		for len(b) > 0 {
			n := 1 + rng.IntN(12)
			if rng.IntN(4) == 0 {
				n = 1 + rng.IntN(20000)
			}
			n = min(n, len(b))
			out = append(out, b[:n])
			b = b[n:]
		}
		return out
	}
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// scan feeds a conversation whole, byte by byte and in random splits,
// checks that every way gives the same log and error, and returns the
// result of feeding it whole.
func scan(t *testing.T, segs []segment, skip func(passive.Request) bool, seeds int) (*recorder, error) {
	t.Helper()
	return scanSplits(t, segs, skip, seeds, true)
}

func scanSplits(t *testing.T, segs []segment, skip func(passive.Request) bool, seeds int, bytewise bool) (*recorder, error) {
	t.Helper()
	want, wantErr := feed(segs, whole, skip)
	want.verify(t, "whole")
	splits := map[string]func([]byte) [][]byte{}
	if bytewise {
		splits["byte by byte"] = byteByByte
	}
	for seed := range seeds {
		splits[fmt.Sprintf("random split %d", seed)] = randomSplit(uint64(seed))
	}
	for name, split := range splits {
		got, err := feed(segs, split, skip)
		got.verify(t, name)
		if diff := cmp.Diff(want.lines(), got.lines()); diff != "" {
			t.Errorf("%s: log differs from feeding whole chunks (-whole +split):\n%s", name, diff)
		}
		if errText(err) != errText(wantErr) {
			t.Errorf("%s: Err = %v, fed whole: %v", name, err, wantErr)
		}
	}
	return want, wantErr
}

// script writes conversations frame by frame, with one HPACK encoder per
// side as real peers have.
type script struct {
	segs        []segment
	out         bytes.Buffer
	fr          *http2.Framer
	clientEnc   *hpack.Encoder
	serverEnc   *hpack.Encoder
	clientHPACK bytes.Buffer
	serverHPACK bytes.Buffer
	// indexAuthorization sends credentials like Go's client does, as
	// indexed fields; otherwise as never-indexed literals.
	indexAuthorization bool
	err                error
}

func newScript() *script {
	s := &script{}
	s.fr = http2.NewFramer(&s.out, nil)
	s.fr.AllowIllegalWrites = true
	s.clientEnc = hpack.NewEncoder(&s.clientHPACK)
	s.serverEnc = hpack.NewEncoder(&s.serverHPACK)
	return s
}

func (s *script) write(client bool, write func(fr *http2.Framer) error) {
	if err := write(s.fr); err != nil && s.err == nil {
		s.err = err
	}
	s.raw(client, s.out.Bytes())
	s.out.Reset()
}

func (s *script) client(write func(fr *http2.Framer) error) { s.write(true, write) }
func (s *script) server(write func(fr *http2.Framer) error) { s.write(false, write) }

func (s *script) raw(client bool, b []byte) {
	s.segs = append(s.segs, segment{client: client, b: bytes.Clone(b)})
}

// block encodes a header block with the side's encoder; fields are name,
// value pairs.
func (s *script) block(client bool, fields ...string) []byte {
	enc, buf := s.serverEnc, &s.serverHPACK
	if client {
		enc, buf = s.clientEnc, &s.clientHPACK
	}
	buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		f := hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: fields[i] == "authorization" && !s.indexAuthorization}
		if err := enc.WriteField(f); err != nil && s.err == nil {
			s.err = err
		}
	}
	return bytes.Clone(buf.Bytes())
}

// start writes the connection preface and both sides' SETTINGS and
// acknowledgements.
func (s *script) start() {
	s.startWith(nil, nil)
}

func (s *script) startWith(clientSettings, serverSettings []http2.Setting) {
	s.raw(true, []byte(http2.ClientPreface))
	s.client(func(fr *http2.Framer) error { return fr.WriteSettings(clientSettings...) })
	s.server(func(fr *http2.Framer) error { return fr.WriteSettings(serverSettings...) })
	s.server(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
	s.client(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
}

// headers writes one HEADERS frame holding a whole block.
func (s *script) headers(client bool, id uint32, endStream bool, fields ...string) {
	block := s.block(client, fields...)
	s.write(client, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: true})
	})
}

func (s *script) data(client bool, id uint32, endStream bool, p string) {
	s.write(client, func(fr *http2.Framer) error { return fr.WriteData(id, endStream, []byte(p)) })
}

func (s *script) rst(client bool, id uint32) { s.rstWith(client, id, http2.ErrCodeCancel) }

func (s *script) rstWith(client bool, id uint32, code http2.ErrCode) {
	s.write(client, func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

func (s *script) goAway(client bool, lastStream uint32, code http2.ErrCode, debug string) {
	s.write(client, func(fr *http2.Framer) error { return fr.WriteGoAway(lastStream, code, []byte(debug)) })
}

const (
	kubectl   = "kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0"
	apiServer = "kubernetes.default.svc:443"
)

// request returns a request's fields: the pseudo-headers, a user agent and
// a credential, then extra.
func request(method, path string, extra ...string) []string {
	f := []string{
		":method", method, ":scheme", "https", ":authority", apiServer, ":path", path,
		"user-agent", kubectl, "authorization", "Bearer s3cr3t-t0ken", "accept", "application/json",
	}
	return append(f, extra...)
}

func response(status string, extra ...string) []string {
	return append([]string{":status", status, "date", "Tue, 04 Aug 2026 10:00:00 GMT", "audit-id", "0d6e3c2a"}, extra...)
}

// scriptCase is a conversation and the log it must give.
type scriptCase struct {
	name  string
	build func(s *script)
	skip  func(passive.Request) bool
	want  []string
}

func podsBegin(id int) string {
	return beginLine(id, "GET", "/api/v1/namespaces/default/pods", "limit=500", kubectl, "", false)
}

var scriptCases = []scriptCase{
	{
		name: "GET",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/api/v1/namespaces/default/pods?limit=500")...)
			s.headers(false, 1, false, response("200", "content-type", "application/json", "content-encoding", "gzip", "x-kubernetes-pf-flowschema-uid", "f1")...)
			s.data(false, 1, false, `{"kind":`)
			s.data(false, 1, true, `"PodList"}`)
		},
		want: []string{
			podsBegin(1),
			responseLine(1, 200, "application/json", "gzip"),
			responseBodyLine(1, `{"kind":"PodList"}`),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "POST body in several DATA frames",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/api/v1/namespaces/default/configmaps?fieldManager=kubectl", "content-type", "application/json")...)
			s.data(true, 1, false, `{"kind":`)
			s.data(true, 1, false, "")
			s.data(true, 1, true, `"ConfigMap"}`)
			s.headers(false, 1, false, response("201", "content-type", "application/json")...)
			s.data(false, 1, true, `{"kind":"ConfigMap","metadata":{}}`)
		},
		want: []string{
			beginLine(1, "POST", "/api/v1/namespaces/default/configmaps", "fieldManager=kubectl", kubectl, "application/json", false),
			requestBodyLine(1, `{"kind":"ConfigMap"}`),
			responseLine(1, 201, "application/json", ""),
			responseBodyLine(1, `{"kind":"ConfigMap","metadata":{}}`),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "padding and priority",
		build: func(s *script) {
			s.start()
			block := s.block(true, request("PUT", "/api/v1/namespaces/default/secrets/s", "content-type", "application/yaml")...)
			s.client(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{
					StreamID: 1, BlockFragment: block, EndHeaders: true, PadLength: 20,
					Priority: http2.PriorityParam{StreamDep: 0, Exclusive: true, Weight: 200},
				})
			})
			s.client(func(fr *http2.Framer) error {
				return fr.WriteDataPadded(1, false, []byte("kind: "), make([]byte, 100))
			})
			// Padding and nothing else, then data with an empty padding.
			s.client(func(fr *http2.Framer) error { return fr.WriteDataPadded(1, false, nil, make([]byte, 5)) })
			s.client(func(fr *http2.Framer) error { return fr.WriteDataPadded(1, true, []byte("Secret"), []byte{}) })
			block = s.block(false, response("200", "content-type", "application/yaml")...)
			s.server(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true, PadLength: 255})
			})
			s.server(func(fr *http2.Framer) error {
				return fr.WriteDataPadded(1, true, []byte("kind: Secret\n"), make([]byte, 255))
			})
		},
		want: []string{
			beginLine(1, "PUT", "/api/v1/namespaces/default/secrets/s", "", kubectl, "application/yaml", false),
			requestBodyLine(1, "kind: Secret"),
			responseLine(1, 200, "application/yaml", ""),
			responseBodyLine(1, "kind: Secret\n"),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "header blocks over CONTINUATION frames",
		build: func(s *script) {
			s.start()
			block := s.block(true, request("GET", "/api/v1/nodes?watch=1", "x-long", strings.Repeat("n", 300))...)
			a, b := len(block)/3, 2*len(block)/3
			s.client(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{
					StreamID: 1, BlockFragment: block[:a], EndStream: true, PadLength: 3,
					Priority: http2.PriorityParam{Weight: 16},
				})
			})
			// The other direction may send frames between them.
			s.server(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1}) })
			s.client(func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, block[a:b]) })
			s.client(func(fr *http2.Framer) error { return fr.WriteContinuation(1, true, block[b:]) })
			block = s.block(false, response("200", "content-type", "application/json;stream=watch")...)
			s.server(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: nil})
			})
			s.server(func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, block[:1]) })
			s.server(func(fr *http2.Framer) error { return fr.WriteContinuation(1, true, block[1:]) })
			s.data(false, 1, true, `{"type":"ADDED"}`)
		},
		want: []string{
			beginLine(1, "GET", "/api/v1/nodes", "watch=1", kubectl, "", false),
			responseLine(1, 200, "application/json;stream=watch", ""),
			responseBodyLine(1, `{"type":"ADDED"}`),
			endLine(1, true),
			"close",
		},
	},
	{
		// The response's content-type is an index into the entry the
		// PUSH_PROMISE added to the server's table: it reads right only
		// if the promise was decoded too.
		name: "PUSH_PROMISE keeps the table in step",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/index.html")...)
			block := s.block(false, ":method", "GET", ":scheme", "https", ":authority", apiServer, ":path", "/pushed.css", "content-type", "text/x-pushed")
			s.server(func(fr *http2.Framer) error {
				return fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: block[:3], PadLength: 9})
			})
			s.server(func(fr *http2.Framer) error { return fr.WriteContinuation(1, true, block[3:]) })
			s.headers(false, 2, false, response("200", "content-type", "text/css")...)
			s.data(false, 2, true, "body { }")
			s.headers(false, 1, false, response("200", "content-type", "text/x-pushed")...)
			s.data(false, 1, true, "<html>")
		},
		want: []string{
			beginLine(1, "GET", "/index.html", "", kubectl, "", false),
			responseLine(1, 200, "text/x-pushed", ""),
			responseBodyLine(1, "<html>"),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "informational responses before the final one",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/apis/batch/v1/namespaces/default/jobs", "expect", "100-continue", "content-type", "application/json")...)
			s.headers(false, 1, false, ":status", "100")
			s.data(true, 1, true, "{}")
			s.headers(false, 1, false, ":status", "103", "link", "</style.css>; rel=preload", "content-type", "text/early")
			s.headers(false, 1, false, response("201", "content-type", "application/json")...)
			s.data(false, 1, true, "{}")
		},
		want: []string{
			beginLine(1, "POST", "/apis/batch/v1/namespaces/default/jobs", "", kubectl, "application/json", false),
			requestBodyLine(1, "{}"),
			responseLine(1, 201, "application/json", ""),
			responseBodyLine(1, "{}"),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "trailers both ways",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/grpc.Service/Call", "content-type", "application/grpc", "te", "trailers")...)
			s.data(true, 1, false, "\x00\x00\x00\x00\x02hi")
			s.headers(true, 1, true, "x-checksum", "abc", "content-type", "text/trailer")
			s.headers(false, 1, false, response("200", "content-type", "application/grpc")...)
			s.data(false, 1, false, "\x00\x00\x00\x00\x02ok")
			s.headers(false, 1, true, "grpc-status", "0", "content-type", "text/trailer", ":status", "500")
		},
		want: []string{
			beginLine(1, "POST", "/grpc.Service/Call", "", kubectl, "application/grpc", false),
			requestBodyLine(1, "\x00\x00\x00\x00\x02hi"),
			responseLine(1, 200, "application/grpc", ""),
			responseBodyLine(1, "\x00\x00\x00\x00\x02ok"),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "extended CONNECT",
		build: func(s *script) {
			s.startWith(nil, []http2.Setting{{ID: http2.SettingEnableConnectProtocol, Val: 1}})
			s.headers(true, 1, false, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", apiServer,
				":path", "/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true", "user-agent", kubectl,
				"sec-websocket-protocol", "v5.channel.k8s.io", "authorization", "Bearer s3cr3t")
			s.headers(false, 1, false, ":status", "200", "sec-websocket-protocol", "v5.channel.k8s.io")
			s.data(true, 1, false, "\x00ls\n")
			s.data(false, 1, false, "\x01file\n")
			s.data(true, 1, false, "\x00exit\n")
			s.data(false, 1, true, "\x03{}")
		},
		want: []string{
			beginLine(1, "CONNECT", "/api/v1/namespaces/default/pods/web/exec", "command=sh&stdin=true", kubectl, "", true),
			responseLine(1, 200, "", ""),
			requestBodyLine(1, "\x00ls\n"),
			responseBodyLine(1, "\x01file\n"),
			requestBodyLine(1, "\x00exit\n"),
			responseBodyLine(1, "\x03{}"),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "RST_STREAM from the client",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/upload", "content-type", "application/octet-stream")...)
			s.data(true, 1, false, "partial")
			s.rst(true, 1)
			s.data(true, 1, true, "late")
			s.headers(false, 1, true, response("200")...)
		},
		want: []string{
			beginLine(1, "POST", "/upload", "", kubectl, "application/octet-stream", false),
			requestBodyLine(1, "partial"),
			endLine(1, false),
			"close",
		},
	},
	{
		name: "RST_STREAM from the server",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/api/v1/pods?watch=true")...)
			s.headers(false, 1, false, response("200", "content-type", "application/json")...)
			s.data(false, 1, false, "part")
			s.rst(false, 1)
			s.data(false, 1, true, "late")
		},
		want: []string{
			beginLine(1, "GET", "/api/v1/pods", "watch=true", kubectl, "", false),
			responseLine(1, 200, "application/json", ""),
			responseBodyLine(1, "part"),
			endLine(1, false),
			"close",
		},
	},
	{
		// Only the server's REFUSED_STREAM says a request was not
		// processed; the client sends it again on a new stream.
		name: "RST_STREAM REFUSED_STREAM",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/upload", "content-type", "application/octet-stream")...)
			s.data(true, 1, false, "part")
			s.rstWith(false, 1, http2.ErrCodeRefusedStream)
			s.data(true, 1, true, "late")
			s.headers(true, 3, false, request("POST", "/upload", "content-type", "application/octet-stream")...)
			s.data(true, 3, true, "part and the rest")
			// Refused after its response: the server did process it, and
			// the client does not send it again.
			s.headers(true, 5, true, request("GET", "/api/v1/pods?watch=true")...)
			s.headers(false, 5, false, response("200", "content-type", "application/json")...)
			s.rstWith(false, 5, http2.ErrCodeRefusedStream)
			// The client's REFUSED_STREAM on its own request is only a reset.
			s.headers(true, 7, false, request("GET", "/client-refuses")...)
			s.rstWith(true, 7, http2.ErrCodeRefusedStream)
			// Other codes from the server are resets too.
			s.headers(true, 9, true, request("GET", "/internal-error")...)
			s.rstWith(false, 9, http2.ErrCodeInternal)
			s.headers(false, 3, true, response("201")...)
		},
		want: []string{
			beginLine(1, "POST", "/upload", "", kubectl, "application/octet-stream", false),
			requestBodyLine(1, "part"),
			refusedLine(1),
			beginLine(2, "POST", "/upload", "", kubectl, "application/octet-stream", false),
			requestBodyLine(2, "part and the rest"),
			beginLine(3, "GET", "/api/v1/pods", "watch=true", kubectl, "", false),
			responseLine(3, 200, "application/json", ""),
			endLine(3, false),
			beginLine(4, "GET", "/client-refuses", "", kubectl, "", false),
			endLine(4, false),
			beginLine(5, "GET", "/internal-error", "", kubectl, "", false),
			endLine(5, false),
			responseLine(2, 201, "", ""),
			endLine(2, true),
			"close",
		},
	},
	{
		// A graceful shutdown: a first GOAWAY with the largest stream ID,
		// then one with the last stream the server took.
		name: "GOAWAY from the server",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/a")...)
			s.headers(true, 3, false, request("POST", "/b")...)
			s.headers(true, 5, true, request("GET", "/c")...)
			s.headers(true, 7, true, request("GET", "/d")...)
			// A server that answers a stream and then says it did not
			// take it: the client has the response, and only loses the
			// rest of it.
			s.headers(false, 7, false, response("200")...)
			s.goAway(true, 0, http2.ErrCodeNo, "")
			s.goAway(false, 1<<31-1, http2.ErrCodeNo, "")
			s.data(true, 3, false, "b1")
			s.goAway(false, 3, http2.ErrCodeNo, "graceful shutdown")
			s.data(true, 5, false, "ignored")
			s.data(false, 7, false, "ignored")
			// Sent before the client read the GOAWAY: the server ignores it.
			s.headers(true, 9, true, request("GET", "/e")...)
			s.data(true, 3, true, "b2")
			// A later GOAWAY may not raise the last stream ID.
			s.goAway(false, 11, http2.ErrCodeNo, "")
			s.headers(true, 11, true, request("GET", "/f")...)
			s.headers(false, 3, false, response("201")...)
			s.data(false, 3, true, "created")
			s.headers(false, 1, true, response("200")...)
		},
		want: []string{
			beginLine(1, "GET", "/a", "", kubectl, "", false),
			beginLine(2, "POST", "/b", "", kubectl, "", false),
			beginLine(3, "GET", "/c", "", kubectl, "", false),
			beginLine(4, "GET", "/d", "", kubectl, "", false),
			responseLine(4, 200, "", ""),
			requestBodyLine(2, "b1"),
			refusedLine(3),
			endLine(4, false),
			beginLine(5, "GET", "/e", "", kubectl, "", false),
			refusedLine(5),
			requestBodyLine(2, "b2"),
			beginLine(6, "GET", "/f", "", kubectl, "", false),
			refusedLine(6),
			responseLine(2, 201, "", ""),
			responseBodyLine(2, "created"),
			endLine(2, true),
			responseLine(1, 200, "", ""),
			endLine(1, true),
			"close",
		},
	},
	{
		// An error GOAWAY refuses the same streams, and the connection
		// ends with the ones the server took still open.
		name: "GOAWAY with an error",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/a")...)
			s.headers(true, 3, true, request("GET", "/b")...)
			s.headers(true, 5, true, request("GET", "/c")...)
			s.goAway(false, 1, http2.ErrCodeEnhanceYourCalm, strings.Repeat("too many requests; ", 40))
		},
		want: []string{
			beginLine(1, "GET", "/a", "", kubectl, "", false),
			beginLine(2, "GET", "/b", "", kubectl, "", false),
			beginLine(3, "GET", "/c", "", kubectl, "", false),
			refusedLine(2),
			refusedLine(3),
			"close",
			endLine(1, false),
		},
	},
	{
		name: "server completes while the client still sends",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/too-large", "content-type", "application/json")...)
			s.data(true, 1, false, "abc")
			s.headers(false, 1, true, response("413", "content-type", "text/plain")...)
			s.data(true, 1, true, "def")
			s.headers(true, 1, true, "x-trailer", "t")
			s.rst(true, 1)
		},
		want: []string{
			beginLine(1, "POST", "/too-large", "", kubectl, "application/json", false),
			requestBodyLine(1, "abc"),
			responseLine(1, 413, "text/plain", ""),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "Begin returning nil",
		skip: func(q passive.Request) bool { return q.Path == "/skip" },
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("POST", "/skip")...)
			s.headers(true, 3, true, request("GET", "/keep")...)
			s.data(true, 1, false, "ignored")
			s.headers(false, 1, false, response("200", "content-type", "text/skip")...)
			s.data(false, 1, true, "ignored")
			s.headers(true, 1, true, "x-trailer", "ignored")
			s.headers(false, 3, false, response("200", "content-type", "text/keep")...)
			s.data(false, 3, true, "kept")
		},
		want: []string{
			"skipped " + requestText(passive.Request{Method: "POST", Path: "/skip", UserAgent: kubectl}),
			beginLine(1, "GET", "/keep", "", kubectl, "", false),
			responseLine(1, 200, "text/keep", ""),
			responseBodyLine(1, "kept"),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "frames of no exchange",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, false, request("PATCH", "/apis/apps/v1/namespaces/default/deployments/web", "content-type", "application/merge-patch+json")...)
			s.client(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{7}) })
			s.server(func(fr *http2.Framer) error { return fr.WritePing(true, [8]byte{7}) })
			s.client(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<20) })
			s.server(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, 1000) })
			s.client(func(fr *http2.Framer) error {
				return fr.WritePriority(1, http2.PriorityParam{StreamDep: 3, Weight: 1})
			})
			s.client(func(fr *http2.Framer) error { return fr.WritePriorityUpdate(1, "u=1") })
			s.client(func(fr *http2.Framer) error { return fr.WriteRawFrame(0xfa, 0xff, 1, []byte("unknown")) })
			s.server(func(fr *http2.Framer) error { return fr.WriteRawFrame(0xfb, 0, 0, nil) })
			// Streams nobody opened: DATA, HEADERS (still decoded), RST_STREAM.
			s.data(true, 5, false, "stray")
			s.headers(false, 7, false, response("200", "content-type", "text/stray")...)
			s.data(false, 7, true, "stray")
			s.rst(false, 9)
			s.server(func(fr *http2.Framer) error { return fr.WriteGoAway(1, http2.ErrCodeNo, []byte("bye")) })
			s.data(true, 1, true, `{"spec":{}}`)
			s.headers(false, 1, true, response("204")...)
		},
		want: []string{
			beginLine(1, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", "", kubectl, "application/merge-patch+json", false),
			requestBodyLine(1, `{"spec":{}}`),
			responseLine(1, 204, "", ""),
			endLine(1, true),
			"close",
		},
	},
	{
		name: "interleaved streams",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/a")...)
			s.headers(true, 3, false, request("POST", "/b", "content-type", "text/b")...)
			s.headers(true, 5, true, request("GET", "/c")...)
			s.data(true, 3, false, "b1")
			s.headers(false, 5, false, response("200", "content-type", "text/c")...)
			s.headers(false, 1, false, response("200", "content-type", "text/a")...)
			s.data(false, 5, false, "c1")
			s.data(true, 3, true, "b2")
			s.data(false, 1, true, "a1")
			s.headers(false, 3, false, response("202", "content-type", "text/b")...)
			s.data(false, 5, true, "c2")
			s.data(false, 3, true, "b")
		},
		want: []string{
			beginLine(1, "GET", "/a", "", kubectl, "", false),
			beginLine(2, "POST", "/b", "", kubectl, "text/b", false),
			beginLine(3, "GET", "/c", "", kubectl, "", false),
			requestBodyLine(2, "b1"),
			responseLine(3, 200, "text/c", ""),
			responseLine(1, 200, "text/a", ""),
			responseBodyLine(3, "c1"),
			requestBodyLine(2, "b2"),
			responseBodyLine(1, "a1"),
			endLine(1, true),
			responseLine(2, 202, "text/b", ""),
			responseBodyLine(3, "c2"),
			endLine(3, true),
			responseBodyLine(2, "b"),
			endLine(2, true),
			"close",
		},
	},
	{
		// Both sides announce table sizes other than 4096 and the encoders
		// follow them with size updates; long values make the tables evict.
		name: "dynamic table size updates",
		build: func(s *script) {
			s.startWith(
				[]http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 8192}},
				[]http2.Setting{{ID: http2.SettingHeaderTableSize, Val: 256}},
			)
			s.clientEnc.SetMaxDynamicTableSize(256)
			s.serverEnc.SetMaxDynamicTableSizeLimit(8192)
			s.serverEnc.SetMaxDynamicTableSize(8192)
			id := uint32(1)
			for i := range 6 {
				big := strings.Repeat(string(rune('a'+i%3)), 1500)
				s.headers(true, id, true, request("GET", fmt.Sprintf("/t/%d", i%2), "x-big", big)...)
				s.headers(false, id, true, response("200", "content-type", fmt.Sprintf("text/t%d", i%2), "x-big", big, "x-big-2", big+"2")...)
				id += 2
				if i == 2 {
					// A table emptied and grown again.
					s.clientEnc.SetMaxDynamicTableSize(0)
					s.serverEnc.SetMaxDynamicTableSize(0)
					s.headers(true, id, true, request("GET", "/t/empty")...)
					s.headers(false, id, true, response("200")...)
					id += 2
					s.clientEnc.SetMaxDynamicTableSize(256)
					s.serverEnc.SetMaxDynamicTableSize(8192)
				}
			}
		},
		want: func() []string {
			var w []string
			n := 0
			exchange := func(path, ct string) {
				n++
				w = append(w, beginLine(n, "GET", path, "", kubectl, "", false), responseLine(n, 200, ct, ""), endLine(n, true))
			}
			for i := range 6 {
				exchange(fmt.Sprintf("/t/%d", i%2), fmt.Sprintf("text/t%d", i%2))
				if i == 2 {
					exchange("/t/empty", "")
				}
			}
			return append(w, "close")
		}(),
	},
	{
		// The bound a side's SETTINGS put on the other side's encoder is
		// the larger of the old and new value until acknowledged.
		name: "table size bound follows acknowledgements",
		build: func(s *script) {
			s.start()
			s.server(func(fr *http2.Framer) error {
				return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 16384})
			})
			s.client(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			s.clientEnc.SetMaxDynamicTableSizeLimit(16384)
			s.clientEnc.SetMaxDynamicTableSize(16384)
			s.headers(true, 1, true, request("GET", "/big-table", "x-big", strings.Repeat("x", 6000))...)
			s.server(func(fr *http2.Framer) error {
				return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1024})
			})
			// Sent before the client read the new SETTINGS.
			s.headers(true, 3, true, request("GET", "/big-table", "x-big", strings.Repeat("x", 6000))...)
			s.client(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			s.clientEnc.SetMaxDynamicTableSize(1024)
			s.headers(true, 5, true, request("GET", "/small-table")...)
			for _, id := range []uint32{1, 3, 5} {
				s.headers(false, id, true, response("200")...)
			}
		},
		want: []string{
			beginLine(1, "GET", "/big-table", "", kubectl, "", false),
			beginLine(2, "GET", "/big-table", "", kubectl, "", false),
			beginLine(3, "GET", "/small-table", "", kubectl, "", false),
			responseLine(1, 200, "", ""),
			endLine(1, true),
			responseLine(2, 200, "", ""),
			endLine(2, true),
			responseLine(3, 200, "", ""),
			endLine(3, true),
			"close",
		},
	},
	{
		name: "request fields",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, ":method", "GET", ":scheme", "https", ":path", "/api/v1/namespaces/a%2Fb/pods?x=1?y=2",
				"user-agent", "first/1", "user-agent", "second/2", "content-type", "text/one", "content-type", "text/two")
			s.headers(true, 3, true, ":method", "GET", ":scheme", "https", ":path", "/q?")
			s.headers(true, 5, true, ":method", "OPTIONS", ":scheme", "https", ":path", "*", "user-agent", "")
			s.headers(true, 7, true, ":authority", "10.0.0.1:10250", ":method", "CONNECT")
			// Not an extended CONNECT: the server answers a GET.
			s.headers(true, 9, true, ":method", "GET", ":protocol", "websocket", ":scheme", "https", ":path", "/ws")
			// :protocol before :method.
			s.headers(true, 11, true, ":protocol", "websocket", ":method", "CONNECT", ":scheme", "https", ":authority", apiServer, ":path", "/ws?x=1")
			s.headers(false, 1, true, ":status", "200", "content-type", "a/1", "content-type", "a/2", "content-encoding", "br", "content-encoding", "gzip")
			for _, id := range []uint32{3, 5, 7, 9, 11} {
				s.headers(false, id, true, ":status", "200")
			}
		},
		want: []string{
			beginLine(1, "GET", "/api/v1/namespaces/a%2Fb/pods", "x=1?y=2", "first/1", "text/one", false),
			beginLine(2, "GET", "/q", "", "", "", false),
			beginLine(3, "OPTIONS", "*", "", "", "", false),
			beginLine(4, "CONNECT", "10.0.0.1:10250", "", "", "", false),
			beginLine(5, "GET", "/ws", "", "", "", false),
			beginLine(6, "CONNECT", "/ws", "x=1", "", "", true),
			responseLine(1, 200, "a/1", "br"),
			endLine(1, true),
			responseLine(2, 200, "", ""),
			endLine(2, true),
			responseLine(3, 200, "", ""),
			endLine(3, true),
			responseLine(4, 200, "", ""),
			endLine(4, true),
			responseLine(5, 200, "", ""),
			endLine(5, true),
			responseLine(6, 200, "", ""),
			endLine(6, true),
			"close",
		},
	},
	{
		// A malformed response is a stream error (RFC 9113 8.1.1): the
		// client resets that stream, the connection goes on.
		name: "malformed responses end only their exchange",
		build: func(s *script) {
			s.start()
			for i := range 4 {
				s.headers(true, uint32(2*i+1), true, request("GET", fmt.Sprintf("/%d", i))...)
			}
			s.headers(false, 1, false, "content-type", "text/no-status")
			s.headers(false, 3, true, ":status", "100")
			s.headers(false, 5, false, ":status", "2OO")
			s.data(false, 5, true, "ignored")
			s.headers(false, 7, false, ":status", "200")
			s.data(false, 7, true, "fine")
		},
		want: []string{
			beginLine(1, "GET", "/0", "", kubectl, "", false),
			beginLine(2, "GET", "/1", "", kubectl, "", false),
			beginLine(3, "GET", "/2", "", kubectl, "", false),
			beginLine(4, "GET", "/3", "", kubectl, "", false),
			endLine(1, false),
			endLine(2, false),
			endLine(3, false),
			responseLine(4, 200, "", ""),
			responseBodyLine(4, "fine"),
			endLine(4, true),
			"close",
		},
	},
	{
		name: "stream identifiers",
		build: func(s *script) {
			s.start()
			s.headers(true, 3, true, request("GET", "/three")...)
			// Even, and lower than a stream already opened: no requests.
			s.headers(true, 2, true, request("GET", "/even")...)
			s.headers(true, 1, true, request("GET", "/one")...)
			s.headers(false, 3, true, response("200")...)
			// A closed stream cannot be opened again.
			s.headers(true, 3, true, request("GET", "/three-again")...)
			s.headers(true, 5, true, request("GET", "/five")...)
		},
		want: []string{
			beginLine(1, "GET", "/three", "", kubectl, "", false),
			responseLine(1, 200, "", ""),
			endLine(1, true),
			beginLine(2, "GET", "/five", "", kubectl, "", false),
			"close",
			endLine(2, false),
		},
	},
	{
		name: "Close ends open exchanges in stream order",
		build: func(s *script) {
			s.start()
			s.headers(true, 1, true, request("GET", "/a")...)
			s.headers(true, 3, false, request("POST", "/b")...)
			s.headers(false, 1, false, response("200")...)
			s.data(false, 1, false, "half")
			// A DATA frame cut short by the end of the connection.
			frame := dataFrame(3, false, "whole frame")
			s.raw(true, frame[:len(frame)-5])
		},
		want: []string{
			beginLine(1, "GET", "/a", "", kubectl, "", false),
			beginLine(2, "POST", "/b", "", kubectl, "", false),
			responseLine(1, 200, "", ""),
			responseBodyLine(1, "half"),
			requestBodyLine(2, "whole "),
			"close",
			endLine(1, false),
			endLine(2, false),
		},
	},
}

func dataFrame(id uint32, endStream bool, p string) []byte {
	var b bytes.Buffer
	if err := http2.NewFramer(&b, nil).WriteData(id, endStream, []byte(p)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func buildCase(tb testing.TB, c scriptCase) []segment {
	tb.Helper()
	s := newScript()
	c.build(s)
	if s.err != nil {
		tb.Fatalf("writing the conversation: %v", s.err)
	}
	return s.segs
}

// TestScriptedExchanges reads conversations written frame by frame, each
// fed whole, byte by byte and in random splits.
func TestScriptedExchanges(t *testing.T) {
	for _, c := range scriptCases {
		t.Run(c.name, func(t *testing.T) {
			rec, err := scan(t, buildCase(t, c), c.skip, 3)
			if diff := cmp.Diff(c.want, rec.lines()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
			if err != nil {
				t.Errorf("Err = %v, want nil", err)
			}
		})
	}
}

// malformedCases each open an exchange, break the protocol, and then send
// a valid exchange that must not be read.
var malformedCases = []struct {
	name    string
	wantErr string
	build   func(s *script)
	// noPrelude: the conversation has no valid start.
	noPrelude bool
}{
	{
		name: "HTTP/1.1 instead of the preface", wantErr: "h2: client did not send the HTTP/2 connection preface", noPrelude: true,
		build: func(s *script) { s.raw(true, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) },
	},
	{
		name: "preface wrong in its last byte", wantErr: "h2: client did not send the HTTP/2 connection preface", noPrelude: true,
		build: func(s *script) { s.raw(true, []byte(http2.ClientPreface[:23]+"X")) },
	},
	{
		name: "CONTINUATION outside a header block", wantErr: "h2: client sent CONTINUATION on stream 3 outside a header block",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WriteContinuation(3, true, s.block(true, request("GET", "/")...))
			})
		},
	},
	{
		name: "DATA inside a header block", wantErr: "h2: server sent DATA on stream 1 inside the header block of stream 1",
		build: func(s *script) {
			block := s.block(false, response("200")...)
			s.server(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block})
			})
			s.data(false, 1, true, "x")
		},
	},
	{
		name: "CONTINUATION of another stream", wantErr: "h2: client sent CONTINUATION on stream 5 inside the header block of stream 3",
		build: func(s *script) {
			block := s.block(true, request("GET", "/")...)
			s.client(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:2]})
			})
			s.client(func(fr *http2.Framer) error { return fr.WriteContinuation(5, true, block[2:]) })
		},
	},
	{
		name: "HPACK index out of range", wantErr: "h2: server header block on stream 1: decoding error: invalid indexed representation index 90",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88, 0x80 | 90}, EndHeaders: true})
			})
		},
	},
	{
		name: "HPACK block cut short", wantErr: "h2: client header block on stream 3: decoding error: truncated headers",
		build: func(s *script) {
			block := s.block(true, request("GET", "/unique-path-for-a-literal")...)
			s.client(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:len(block)-3], EndHeaders: true})
			})
		},
	},
	{
		name: "table size update over the announced size", wantErr: "h2: server header block on stream 1: decoding error: dynamic table size update too large",
		build: func(s *script) {
			s.serverEnc.SetMaxDynamicTableSizeLimit(8192)
			s.serverEnc.SetMaxDynamicTableSize(8192)
			s.headers(false, 1, true, response("200")...)
		},
	},
	{
		name: "table size update over an acknowledged smaller size", wantErr: "h2: client header block on stream 3: decoding error: dynamic table size update too large",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error {
				return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192})
			})
			s.server(func(fr *http2.Framer) error {
				return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1024})
			})
			s.client(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			s.client(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			s.clientEnc.SetMaxDynamicTableSizeLimit(8192)
			s.clientEnc.SetMaxDynamicTableSize(8192)
			s.headers(true, 3, true, request("GET", "/")...)
		},
	},
	{
		name: "DATA padding longer than the payload", wantErr: "h2: client DATA frame on stream 1 has 10 bytes of padding in a 2-byte payload",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WriteRawFrame(http2.FrameData, http2.FlagDataPadded, 1, []byte{10, 'a'})
			})
		},
	},
	{
		name: "padded DATA without a pad length", wantErr: "h2: server sent a padded DATA frame without a pad length",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error { return fr.WriteRawFrame(http2.FrameData, http2.FlagDataPadded, 1, nil) })
		},
	},
	{
		name: "HEADERS padding longer than the payload", wantErr: "h2: server HEADERS frame on stream 1 is 3 bytes, too short for its 201 bytes of padding and fields",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error {
				return fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders, 1, []byte{200, 0x88, 0})
			})
		},
	},
	{
		name: "HEADERS too short for its priority", wantErr: "h2: client HEADERS frame on stream 3 is 2 bytes, too short for its 5 bytes of padding and fields",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPriority|http2.FlagHeadersEndHeaders, 3, []byte{0, 0})
			})
		},
	},
	{
		name: "padded HEADERS without a pad length", wantErr: "h2: client padded HEADERS frame on stream 3 has no pad length",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders, 3, nil)
			})
		},
	},
	{
		name: "header block over 1 MiB", wantErr: "h2: client header block on stream 3 is larger than 1048576 bytes",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: make([]byte, 600<<10)})
			})
			s.client(func(fr *http2.Framer) error { return fr.WriteContinuation(3, true, make([]byte, 600<<10)) })
		},
	},
	{
		name: "HEADERS on stream 0", wantErr: "h2: client sent HEADERS on stream 0",
		build: func(s *script) { s.headers(true, 0, true, request("GET", "/")...) },
	},
	{
		name: "DATA on stream 0", wantErr: "h2: server sent DATA on stream 0",
		build: func(s *script) { s.data(false, 0, false, "x") },
	},
	{
		name: "PUSH_PROMISE from the client", wantErr: "h2: client sent PUSH_PROMISE",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 3, EndHeaders: true})
			})
		},
	},
	{
		name: "PUSH_PROMISE too short for the promised stream", wantErr: "h2: server PUSH_PROMISE frame on stream 1 is 2 bytes, too short for its 4 bytes of padding and fields",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error {
				return fr.WriteRawFrame(http2.FramePushPromise, http2.FlagPushPromiseEndHeaders, 1, []byte{0, 2})
			})
		},
	},
	{
		name: "SETTINGS of a bad length", wantErr: "h2: server sent SETTINGS of 5 bytes, not a multiple of 6",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error { return fr.WriteRawFrame(http2.FrameSettings, 0, 0, make([]byte, 5)) })
		},
	},
	{
		name: "SETTINGS acknowledgement with a payload", wantErr: "h2: client sent a SETTINGS acknowledgement with a payload",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error {
				return fr.WriteRawFrame(http2.FrameSettings, http2.FlagSettingsAck, 0, make([]byte, 6))
			})
		},
	},
	{
		name: "SETTINGS on a stream", wantErr: "h2: client sent SETTINGS on stream 1",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error { return fr.WriteRawFrame(http2.FrameSettings, 0, 1, nil) })
		},
	},
	{
		name: "GOAWAY on a stream", wantErr: "h2: server sent a malformed GOAWAY (stream 1, 8 bytes)",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error { return fr.WriteRawFrame(http2.FrameGoAway, 0, 1, make([]byte, 8)) })
		},
	},
	{
		name: "GOAWAY too short", wantErr: "h2: client sent a malformed GOAWAY (stream 0, 7 bytes)",
		build: func(s *script) {
			s.client(func(fr *http2.Framer) error { return fr.WriteRawFrame(http2.FrameGoAway, 0, 0, make([]byte, 7)) })
		},
	},
	{
		name: "RST_STREAM of a bad length", wantErr: "h2: server sent a malformed RST_STREAM (stream 1, 3 bytes)",
		build: func(s *script) {
			s.server(func(fr *http2.Framer) error { return fr.WriteRawFrame(http2.FrameRSTStream, 0, 1, []byte{0, 0, 8}) })
		},
	},
}

// TestMalformed checks that broken input stops the scanner with a clear
// error, ends the open exchange at once, and that later bytes are ignored.
func TestMalformed(t *testing.T) {
	for _, c := range malformedCases {
		t.Run(c.name, func(t *testing.T) {
			s := newScript()
			var want []string
			if !c.noPrelude {
				s.start()
				s.headers(true, 1, false, request("POST", "/open")...)
				want = append(want, beginLine(1, "POST", "/open", "", kubectl, "", false), endLine(1, false))
			}
			c.build(s)
			// Sent after the break: no exchange may come of it.
			if c.noPrelude {
				s.start()
			}
			s.headers(true, 101, true, request("GET", "/after")...)
			s.headers(false, 101, true, response("200")...)
			if s.err != nil {
				t.Fatalf("writing the conversation: %v", s.err)
			}
			rec, err := scan(t, s.segs, nil, 3)
			if diff := cmp.Diff(append(want, "close"), rec.lines()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("Err = %v, want %q", err, c.wantErr)
			}
		})
	}
}

// TestLargestFrame sends DATA frames of the largest length the frame
// header allows; the scanner streams them, padded or not.
func TestLargestFrame(t *testing.T) {
	const maxLength = 1<<24 - 1
	body := make([]byte, maxLength)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	s := newScript()
	s.start()
	s.headers(true, 1, false, request("PUT", "/big")...)
	s.client(func(fr *http2.Framer) error { return fr.WriteData(1, true, body) })
	s.headers(false, 1, false, response("200")...)
	// Padded: 1 pad length byte, 255 of padding, and the rest data.
	s.server(func(fr *http2.Framer) error {
		return fr.WriteDataPadded(1, true, body[:maxLength-256], make([]byte, 255))
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	if got := len(s.segs[len(s.segs)-1].b); got != 9+maxLength {
		t.Fatalf("the padded frame is %d bytes, want %d", got, 9+maxLength)
	}
	// Byte by byte would take long; the random splits cut the frames in
	// thousands of places.
	rec, err := scanSplits(t, s.segs, nil, 2, false)
	want := []string{
		beginLine(1, "PUT", "/big", "", kubectl, "", false),
		fmt.Sprintf("#1 request body %s", bodyText(body)),
		responseLine(1, 200, "", ""),
		fmt.Sprintf("#1 response body %s", bodyText(body[:maxLength-256])),
		endLine(1, true),
		"close",
	}
	if diff := cmp.Diff(want, rec.lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if err != nil {
		t.Errorf("Err = %v", err)
	}
}

// TestSplittingInvariance feeds every scripted conversation in many more
// random splits than the other tests do.
func TestSplittingInvariance(t *testing.T) {
	for _, c := range scriptCases {
		t.Run(c.name, func(t *testing.T) {
			scan(t, buildCase(t, c), c.skip, 40)
		})
	}
}

// TestAfterClose checks that Close is idempotent and bytes after it are
// ignored.
func TestAfterClose(t *testing.T) {
	rec := &recorder{}
	s := New(rec.begin)
	sc := newScript()
	sc.start()
	sc.headers(true, 1, true, request("GET", "/")...)
	for _, seg := range sc.segs[:len(sc.segs)-1] {
		give(s, seg.client, seg.b)
	}
	s.Close()
	s.Close()
	s.Client(sc.segs[len(sc.segs)-1].b)
	if len(rec.exchanges) != 0 || s.Err() != nil {
		t.Errorf("after Close: %d exchanges, Err %v", len(rec.exchanges), s.Err())
	}
}

// TestNilBegin checks that a scanner without a Begin reads on.
func TestNilBegin(t *testing.T) {
	s := New(nil)
	sc := newScript()
	sc.start()
	sc.headers(true, 1, true, request("GET", "/")...)
	sc.headers(false, 1, true, response("200")...)
	for _, seg := range sc.segs {
		give(s, seg.client, seg.b)
	}
	s.Close()
	if s.Err() != nil {
		t.Errorf("Err = %v", s.Err())
	}
}

// schedule turns segments into the fuzzer's input form: each schedule
// byte hands 1 to 128 bytes of one side to the scanner (top bit set: the
// server's).
func schedule(segs []segment) (client, server, sched []byte) {
	for _, seg := range segs {
		dir := byte(0)
		if seg.client {
			client = append(client, seg.b...)
		} else {
			server = append(server, seg.b...)
			dir = 0x80
		}
		for n := len(seg.b); n > 0; n -= 128 {
			sched = append(sched, dir|byte(min(n, 128)-1))
		}
	}
	return client, server, sched
}

func feedSchedule(client, server, sched []byte, split func([]byte) [][]byte) (*recorder, error) {
	rec := &recorder{skip: func(q passive.Request) bool { return strings.Contains(q.Path, "skip") }}
	s := New(rec.begin)
	giveSplit := func(fromClient bool, p []byte) {
		for _, piece := range split(p) {
			give(s, fromClient, piece)
		}
	}
	for _, b := range sched {
		n := int(b&0x7f) + 1
		if b&0x80 == 0 {
			n = min(n, len(client))
			giveSplit(true, client[:n])
			client = client[n:]
		} else {
			n = min(n, len(server))
			giveSplit(false, server[:n])
			server = server[n:]
		}
	}
	giveSplit(true, client)
	giveSplit(false, server)
	rec.note("close")
	s.Close()
	return rec, s.Err()
}

// FuzzScanner feeds any bytes in any interleaving: the scanner must not
// panic, must keep the Exchange contract (every begun exchange ended
// exactly once after Close, by End or Refused), and must read the same
// thing when each piece is handed over byte by byte.
func FuzzScanner(f *testing.F) {
	for _, c := range scriptCases {
		client, server, sched := schedule(buildCase(f, c))
		f.Add(client, server, sched)
	}
	for _, c := range malformedCases {
		s := newScript()
		if !c.noPrelude {
			s.start()
			s.headers(true, 1, false, request("POST", "/open")...)
		}
		c.build(s)
		if s.err != nil {
			f.Fatal(s.err)
		}
		client, server, sched := schedule(s.segs)
		if len(client)+len(server) < 64<<10 {
			f.Add(client, server, sched)
		}
	}
	f.Add([]byte(http2.ClientPreface), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, client, server, sched []byte) {
		rec, err := feedSchedule(client, server, sched, whole)
		rec.verify(t, "pieces")
		split, splitErr := feedSchedule(client, server, sched, byteByByte)
		split.verify(t, "byte by byte")
		if diff := cmp.Diff(rec.lines(), split.lines()); diff != "" {
			t.Errorf("byte by byte reads differently (-pieces +bytes):\n%s", diff)
		}
		if errText(err) != errText(splitErr) {
			t.Errorf("Err %v, byte by byte %v", err, splitErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "h2: ") {
			t.Errorf("Err %q does not start with \"h2: \"", err)
		}
	})
}

// benchExchange counts calls and keeps nothing.
type benchExchange struct {
	begun, ended, bodyBytes int
}

func (x *benchExchange) RequestBody(p []byte)        { x.bodyBytes += len(p) }
func (x *benchExchange) Response(r passive.Response) {}
func (x *benchExchange) ResponseBody(p []byte)       { x.bodyBytes += len(p) }
func (x *benchExchange) End(complete bool) {
	if complete {
		x.ended++
	}
}
func (x *benchExchange) Refused() {}

// established returns a scanner past the preface and one exchange, so the
// HPACK tables hold the fields bench requests and responses use, and the
// script to write more with.
func established(tb testing.TB, x *benchExchange, reqFields, respFields []string) (*Scanner, *script) {
	tb.Helper()
	begin := func(passive.Request) passive.Exchange {
		x.begun++
		return x
	}
	sc := New(begin)
	s := newScript()
	s.indexAuthorization = true
	s.start()
	s.headers(true, 1, true, reqFields...)
	s.headers(false, 1, true, respFields...)
	if s.err != nil {
		tb.Fatal(s.err)
	}
	for _, seg := range s.segs {
		give(sc, seg.client, seg.b)
	}
	s.segs = nil
	return sc, s
}

// setStream rewrites the stream identifier of every frame in b.
func setStream(b []byte, id uint32) {
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		b[5], b[6], b[7], b[8] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
		b = b[9+n:]
	}
}

// benchConversation holds the bytes of one exchange, written once and fed
// again on a new stream each iteration: every field is an index into the
// dynamic tables by then, so the bytes stay the same.
type benchConversation struct {
	client, server []byte
}

func runBench(b *testing.B, reqFields, respFields []string, body []byte, frameSize, serverChunk int) {
	x := &benchExchange{}
	sc, s := established(b, x, reqFields, respFields)
	s.headers(true, 3, true, reqFields...)
	s.headers(false, 3, false, respFields...)
	for rest := body; len(rest) > 0; {
		n := min(frameSize, len(rest))
		chunk := rest[:n]
		rest = rest[n:]
		end := len(rest) == 0
		s.server(func(fr *http2.Framer) error { return fr.WriteData(3, end, chunk) })
	}
	var conv benchConversation
	for _, seg := range s.segs {
		if seg.client {
			conv.client = append(conv.client, seg.b...)
		} else {
			conv.server = append(conv.server, seg.b...)
		}
	}
	b.SetBytes(int64(len(conv.client) + len(conv.server)))
	b.ReportAllocs()
	id := uint32(3)
	for b.Loop() {
		setStream(conv.client, id)
		setStream(conv.server, id)
		id += 2
		sc.Client(conv.client)
		for p := conv.server; len(p) > 0; {
			n := min(serverChunk, len(p))
			sc.Server(p[:n])
			p = p[n:]
		}
	}
	b.StopTimer()
	// The warm-up exchange had no body.
	if sc.Err() != nil || x.ended != x.begun || x.bodyBytes != (x.ended-1)*len(body) {
		b.Fatalf("Err %v, %d begun, %d ended, %d body bytes", sc.Err(), x.begun, x.ended, x.bodyBytes)
	}
}

// BenchmarkGETExchange: a GET and its 1 KiB response on an established
// connection, header fields all indexed.
func BenchmarkGETExchange(b *testing.B) {
	req := request("GET", "/api/v1/namespaces/default/pods/web-0")
	resp := response("200", "content-type", "application/json", "content-length", "1024")
	runBench(b, req, resp, bytes.Repeat([]byte("x"), 1024), 16<<10, 32<<10)
}

// BenchmarkListResponse: a LIST whose 100 KiB response comes in 16 KiB
// DATA frames, read in 16 KiB chunks that do not line up with the frames.
func BenchmarkListResponse(b *testing.B) {
	req := request("GET", "/api/v1/pods?limit=500")
	resp := response("200", "content-type", "application/json")
	runBench(b, req, resp, bytes.Repeat([]byte("y"), 100<<10), 16<<10, 16<<10)
}
