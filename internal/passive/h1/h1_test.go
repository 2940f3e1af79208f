package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/passive"
)

// testLog records what a scanner reports, in order, and every breach of the
// passive.Exchange contract it sees.
type testLog struct {
	events    []event
	exchanges []*testExchange
	problems  []string
	// skipEvery makes Begin ignore every skipEvery-th request when > 0.
	skipEvery int
	begun     int
}

type event struct {
	id         int
	kind, text string
	body       []byte // of a reqbody or respbody event
}

type testExchange struct {
	log       *testLog
	id        int
	req       passive.Request
	reqBody   bytes.Buffer
	respBody  bytes.Buffer
	resp      passive.Response
	responses int
	// ends counts End and Refused calls.
	ends     int
	complete bool
}

func (l *testLog) begin(r passive.Request) passive.Exchange {
	l.begun++
	id := l.begun
	if l.skipEvery > 0 && id%l.skipEvery == 0 {
		l.add(id, "ignored", "")
		return nil
	}
	e := &testExchange{log: l, id: id, req: r}
	l.exchanges = append(l.exchanges, e)
	text := r.Method + " " + r.Path
	if r.RawQuery != "" {
		text += " ?" + r.RawQuery
	}
	if r.UserAgent != "" {
		text += " ua=" + r.UserAgent
	}
	if r.ContentType != "" {
		text += " ct=" + r.ContentType
	}
	if r.Upgrade {
		text += " upgrade"
	}
	l.add(id, "begin", text)
	return e
}

// add appends an event; successive body pieces of one exchange make one
// event, so that logs do not depend on where chunks were cut.
func (l *testLog) add(id int, kind, text string) {
	l.events = append(l.events, event{id: id, kind: kind, text: text})
}

func (l *testLog) addBody(id int, kind string, p []byte) {
	if n := len(l.events); n > 0 {
		if last := &l.events[n-1]; last.id == id && last.kind == kind {
			last.body = append(last.body, p...)
			return
		}
	}
	l.events = append(l.events, event{id: id, kind: kind, body: bytes.Clone(p)})
}

func (l *testLog) problem(format string, args ...any) {
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

func (e *testExchange) RequestBody(p []byte) {
	if e.ends > 0 {
		e.log.problem("%d: RequestBody after End", e.id)
	}
	e.reqBody.Write(p)
	e.log.addBody(e.id, "reqbody", p)
}

func (e *testExchange) Response(r passive.Response) {
	if e.ends > 0 || e.responses > 0 {
		e.log.problem("%d: Response after End or a second time", e.id)
	}
	e.responses++
	e.resp = r
	text := fmt.Sprint(r.Status)
	if r.ContentType != "" {
		text += " ct=" + r.ContentType
	}
	if r.ContentEncoding != "" {
		text += " ce=" + r.ContentEncoding
	}
	e.log.add(e.id, "response", text)
}

func (e *testExchange) ResponseBody(p []byte) {
	if e.ends > 0 || e.responses == 0 {
		e.log.problem("%d: ResponseBody after End or before Response", e.id)
	}
	e.respBody.Write(p)
	e.log.addBody(e.id, "respbody", p)
}

func (e *testExchange) End(complete bool) {
	if e.ends > 0 {
		e.log.problem("%d: End a second time", e.id)
	}
	e.ends++
	e.complete = complete
	e.log.add(e.id, "end", fmt.Sprint(complete))
}

// Refused is logged like End, so that a scanner calling it where it should
// not shows in the reports the tests compare.
func (e *testExchange) Refused() {
	if e.ends > 0 {
		e.log.problem("%d: Refused after End", e.id)
	}
	e.ends++
	e.log.add(e.id, "refused", "")
}

// lines renders the events one a line; bodies are quoted.
func (l *testLog) lines() []string {
	var lines []string
	for _, ev := range l.events {
		text := ev.text
		if ev.kind == "reqbody" || ev.kind == "respbody" {
			text = fmt.Sprintf("%q", ev.body)
		}
		lines = append(lines, strings.TrimSpace(fmt.Sprintf("%d %s %s", ev.id, ev.kind, text)))
	}
	return lines
}

// unended lists the exchanges Begin returned that have not ended.
func (l *testLog) unended() []int {
	var ids []int
	for _, e := range l.exchanges {
		if e.ends == 0 {
			ids = append(ids, e.id)
		}
	}
	return ids
}

// segment is what one side sent in one piece.
type segment struct {
	fromServer bool
	data       []byte
}

func cli(s string) segment { return segment{false, []byte(s)} }
func srv(s string) segment { return segment{true, []byte(s)} }

// splitter cuts one segment into the pieces a scanner is given.
type splitter func([]byte) [][]byte

func whole(p []byte) [][]byte { return [][]byte{p} }

func byteByByte(p []byte) [][]byte {
	pieces := make([][]byte, len(p))
	for i := range p {
		pieces[i] = p[i : i+1]
	}
	return pieces
}

func randomSplits(seed uint64) splitter {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(p []byte) [][]byte {
		var pieces [][]byte
		for len(p) > 0 {
			n := 1 + r.IntN(min(len(p), 1+r.IntN(64)))
			pieces = append(pieces, p[:n])
			p = p[n:]
		}
		return pieces
	}
}

// replay feeds segments to a new scanner, each cut by split, then closes
// it. It returns the log and the scanner, and records as problems any
// breach of what a scanner promises: an error ends every open exchange at
// once, and Close ends every one.
func replay(segs []segment, split splitter, skipEvery int) (*testLog, *Scanner) {
	l := &testLog{skipEvery: skipEvery}
	s := New(l.begin)
	for _, seg := range segs {
		for _, piece := range split(seg.data) {
			// A copy that is overwritten after the call catches a
			// scanner keeping bytes it was lent.
			lent := bytes.Clone(piece)
			if seg.fromServer {
				s.Server(lent)
			} else {
				s.Client(lent)
			}
			clear(lent)
			if s.Err() != nil && len(l.unended()) > 0 {
				l.problem("exchanges %v still open after error %v", l.unended(), s.Err())
			}
		}
	}
	s.Close()
	if ids := l.unended(); len(ids) > 0 {
		l.problem("exchanges %v not ended after Close", ids)
	}
	return l, s
}

// report is a replay's whole outcome, for comparison.
func report(l *testLog, s *Scanner) string {
	var b strings.Builder
	for _, line := range l.lines() {
		b.WriteString(line + "\n")
	}
	for _, p := range l.problems {
		b.WriteString("problem: " + p + "\n")
	}
	fmt.Fprintf(&b, "err: %v\n", s.Err())
	return b.String()
}

// checkSplits replays segs whole, byte by byte and in random cuts, and
// fails unless all report the same; it returns the whole replay's log.
func checkSplits(t *testing.T, segs []segment) (*testLog, *Scanner) {
	t.Helper()
	l, s := replay(segs, whole, 0)
	want := report(l, s)
	if len(l.problems) > 0 {
		t.Errorf("contract broken:\n%s", want)
	}
	cuts := map[string]splitter{"byte by byte": byteByByte}
	for seed := range uint64(5) {
		cuts[fmt.Sprintf("random cuts %d", seed)] = randomSplits(seed)
	}
	for name, split := range cuts {
		if got := report(replay(segs, split, 0)); got != want {
			t.Errorf("%s reports differently from whole segments:\n%s\nwhole:\n%s", name, got, want)
		}
	}
	return l, s
}

// scenario is a scripted connection and what a scanner must report of it.
type scenario struct {
	name      string
	segs      []segment
	skipEvery int
	want      []string
}

var scenarios = []scenario{
	{
		name: "keep-alive GET then POST",
		segs: []segment{
			cli("GET /api/v1/pods?limit=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: ua/1\r\nAuthorization: Bearer secret\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
			cli("POST /api/v1/pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"),
			srv("HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc"),
		},
		want: []string{
			"1 begin GET /api/v1/pods ?limit=1 ua=ua/1",
			"1 response 200 ct=application/json",
			`1 respbody "{}"`,
			"1 end true",
			"2 begin POST /api/v1/pods ct=application/json",
			`2 reqbody "hello"`,
			"2 response 201",
			`2 respbody "abc"`,
			"2 end true",
		},
	},
	{
		name: "chunked both ways, with extensions and trailers",
		segs: []segment{
			cli("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\n6 ; a=\"q\"\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Encoding: gzip\r\n\r\nA\r\n0123456789\r\n000;last\r\nX-Sum: 9\r\nX-Other: 8\r\n\r\n"),
		},
		want: []string{
			"1 begin PUT /x",
			`1 reqbody "hello world"`,
			"1 response 200 ce=gzip",
			`1 respbody "0123456789"`,
			"1 end true",
		},
	},
	{
		name: "informational responses before the final one",
		segs: []segment{
			cli("POST /v HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
			srv("HTTP/1.1 100 Continue\r\n\r\n"),
			cli("body"),
			srv("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		},
		want: []string{
			"1 begin POST /v",
			`1 reqbody "body"`,
			"1 response 200",
			"1 end true",
		},
	},
	{
		name: "pipelined HEAD, 204, 304 and a body",
		segs: []segment{
			cli("HEAD /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" +
				"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd"),
		},
		want: []string{
			"1 begin HEAD /a", "2 begin GET /b", "3 begin GET /c", "4 begin GET /d",
			"1 response 200", "1 end true",
			"2 response 204", "2 end true",
			"3 response 304", "3 end true",
			"4 response 200", `4 respbody "d"`, "4 end true",
		},
	},
	{
		name: "response read until the connection closes",
		segs: []segment{
			cli("GET /logs?follow=true HTTP/1.1\r\n\r\n"),
			srv("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nline 1\n"),
			srv("line 2\n"),
		},
		want: []string{
			"1 begin GET /logs ?follow=true",
			"1 response 200 ct=text/plain",
			`1 respbody "line 1\nline 2\n"`,
			"1 end true",
		},
	},
	{
		name: "a transfer coding other than chunked last reads until close",
		segs: []segment{
			cli("GET /z HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdef"),
		},
		want: []string{
			"1 begin GET /z", "2 begin GET /never",
			"1 response 200", `1 respbody "abcdef"`,
			"1 end true", "2 end false",
		},
	},
	{
		name: "upgrade switched, with bytes sent before the answer",
		segs: []segment{
			cli("GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nearly"),
			cli(" more"),
			srv("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nserver bytes"),
			cli("later"),
			srv("HTTP/1.1 200 OK\r\n\r\n"),
		},
		want: []string{
			"1 begin GET /exec upgrade",
			"1 response 101",
			`1 reqbody "early more"`,
			`1 respbody "server bytes"`,
			`1 reqbody "later"`,
			`1 respbody "HTTP/1.1 200 OK\r\n\r\n"`,
			"1 end false",
		},
	},
	{
		name: "upgrade refused: bytes held back are the next request",
		segs: []segment{
			cli("GET /exec HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\nUser-Agent: b\r\n\r\n"),
			srv("HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno!HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
		},
		want: []string{
			"1 begin GET /exec upgrade",
			"1 response 400",
			"2 begin GET /next ua=b",
			`1 respbody "no!"`,
			"1 end true",
			"2 response 200",
			`2 respbody "ok"`,
			"2 end true",
		},
	},
	{
		name: "upgrade request with a body, switched",
		segs: []segment{
			cli("POST /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: 3\r\n\r\nab"),
			srv("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
			cli("ctunnel"),
		},
		want: []string{
			"1 begin POST /up upgrade",
			`1 reqbody "ab"`,
			"1 response 101",
			`1 reqbody "ctunnel"`,
			"1 end false",
		},
	},
	{
		name: "CONNECT tunnel",
		segs: []segment{
			cli("CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n\x16\x03\x01"),
			srv("HTTP/1.1 200 Connection established\r\n\r\n"),
			srv("\x16\x03\x03"),
			cli("GET / HTTP/1.1\r\n\r\n"),
		},
		want: []string{
			"1 begin CONNECT example.test:443",
			"1 response 200",
			`1 reqbody "\x16\x03\x01"`,
			`1 respbody "\x16\x03\x03"`,
			`1 reqbody "GET / HTTP/1.1\r\n\r\n"`,
			"1 end false",
		},
	},
	{
		name: "CONNECT refused",
		segs: []segment{
			cli("CONNECT example.test:443 HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n"),
			srv("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		},
		want: []string{
			"1 begin CONNECT example.test:443",
			"1 response 403",
			"1 end true",
			"2 begin GET /after",
			"2 response 200",
			"2 end true",
		},
	},
	{
		name: "response complete before the request body",
		segs: []segment{
			cli("POST /upload HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234"),
			srv("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"),
			cli("56789GET /after HTTP/1.1\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		},
		want: []string{
			"1 begin POST /upload",
			`1 reqbody "01234"`,
			"1 response 413",
			"1 end true",
			"2 begin GET /after",
			"2 response 200",
			"2 end true",
		},
	},
	{
		name:      "Begin ignores an exchange",
		skipEvery: 2,
		segs: []segment{
			cli("POST /1 HTTP/1.1\r\nContent-Length: 1\r\n\r\na"),
			cli("POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"),
			cli("POST /3 HTTP/1.1\r\nContent-Length: 1\r\n\r\nc"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"),
			srv("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nB\r\n0\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC"),
		},
		want: []string{
			"1 begin POST /1", `1 reqbody "a"`,
			"2 ignored",
			"3 begin POST /3", `3 reqbody "c"`,
			"1 response 200", `1 respbody "A"`, "1 end true",
			"3 response 200", `3 respbody "C"`, "3 end true",
		},
	},
	{
		name: "Close ends what is open",
		segs: []segment{
			cli("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1."),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"),
		},
		want: []string{
			"1 begin GET /a", "2 begin GET /b",
			"1 response 200", `1 respbody "01234"`,
			"1 end false", "2 end false",
		},
	},
	{
		name: "request target forms, bare LF line ends, odd names",
		segs: []segment{
			cli("\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
			cli("GET http://example.test:8080/api/v1/nodes?watch=1 HTTP/1.1\nHost: x\n\n"),
			cli("GET https://example.test?x=y HTTP/1.1\r\n\r\n"),
			cli("PROPFIND /dav/%20a HTTP/1.0\r\ncontent-type:text/x-odd\r\nuser-agent:  lower/1 \r\nUser-Agent: second\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 0\n\nHTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
			srv("HTTP/1.1 207 Multi-Status\r\nCONTENT-TYPE: application/xml\r\ncontent-length: 2\r\n\r\nxx"),
		},
		want: []string{
			"1 begin OPTIONS *",
			"2 begin GET /api/v1/nodes ?watch=1",
			"3 begin GET / ?x=y",
			"4 begin PROPFIND /dav/%20a ua=lower/1 ct=text/x-odd",
			"1 response 200", "1 end true",
			"2 response 200", "2 end true",
			"3 response 200", "3 end true",
			"4 response 207 ct=application/xml", `4 respbody "xx"`, "4 end true",
		},
	},
	{
		name: "Content-Length lists and Transfer-Encoding over Content-Length",
		segs: []segment{
			cli("POST /a HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
			cli("POST /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nContent-Encoding: x-custom\r\nContent-Length: 0\r\n\r\n"),
		},
		want: []string{
			"1 begin POST /a", `1 reqbody "abc"`,
			"1 response 200", `1 respbody "ok"`, "1 end true",
			"2 begin POST /b",
			"2 response 200 ct=application/vnd.kubernetes.protobuf ce=x-custom", "2 end true",
		},
	},
}

// TestScenarios checks scripted connections' reports, and that they do not
// depend on how the bytes were cut.
func TestScenarios(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			l, s := replay(sc.segs, whole, sc.skipEvery)
			if s.Err() != nil {
				t.Errorf("Err = %v", s.Err())
			}
			if len(l.problems) > 0 {
				t.Errorf("contract broken: %q", l.problems)
			}
			if got := l.lines(); !slicesEqual(got, sc.want) {
				t.Errorf("reported\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(sc.want, "\n"))
			}
			if sc.skipEvery == 0 {
				checkSplits(t, sc.segs)
			}
		})
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// TestMalformed checks that bytes that cannot be framed stop the scanner
// with an error, end every open exchange at once, and that later bytes,
// even good ones, are ignored.
func TestMalformed(t *testing.T) {
	manyRequests := strings.Repeat("GET / HTTP/1.1\r\n\r\n", maxWaiting+1)
	bigHeader := "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n"
	cases := []struct {
		name    string
		segs    []segment
		wantErr string
		// ended is how many exchanges End(false) reports before Close.
		ended int
	}{
		{"no version", []segment{cli("GET /\r\n\r\n")}, "malformed request line", 0},
		{"HTTP/2 preface", []segment{cli("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}, "malformed request line", 0},
		{"bad method", []segment{cli("G(T / HTTP/1.1\r\n\r\n")}, "malformed request line", 0},
		{"two spaces", []segment{cli("GET  / HTTP/1.1\r\n\r\n")}, "malformed request line", 0},
		{"control in target", []segment{cli("GET /\x01 HTTP/1.1\r\n\r\n")}, "malformed request target", 0},
		{"relative target", []segment{cli("GET api/v1 HTTP/1.1\r\n\r\n")}, "malformed request target", 0},
		{"field without colon", []segment{cli("GET / HTTP/1.1\r\nHost x\r\n\r\n")}, "malformed header field", 0},
		{"space before colon", []segment{cli("GET / HTTP/1.1\r\nHost : x\r\n\r\n")}, "malformed header field", 0},
		{"obsolete folding", []segment{cli("GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n")}, "obsolete line folding", 0},
		{"NUL in user agent", []segment{cli("GET / HTTP/1.1\r\nUser-Agent: a\x00b\r\n\r\n")}, "control character", 0},
		{"bare CR in content type", []segment{cli("GET / HTTP/1.1\r\nContent-Type: a\rb\r\n\r\n")}, "control character", 0},
		{"non-numeric length", []segment{cli("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n")}, "malformed Content-Length", 0},
		{"negative length", []segment{cli("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")}, "malformed Content-Length", 0},
		{"huge length", []segment{cli("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n")}, "malformed Content-Length", 0},
		{"conflicting lengths", []segment{cli("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")}, "conflicting Content-Length", 0},
		{"conflicting length list", []segment{cli("POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n")}, "conflicting Content-Length", 0},
		{"request coding not chunked", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")}, "does not end in chunked", 0},
		{"coding in HTTP/1.0", []segment{cli("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")}, "HTTP/1.0", 0},
		{"bad chunk size", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}, "malformed chunk size", 1},
		{"chunk size too large", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n")}, "chunk size too large", 1},
		{"chunk extension without semicolon", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n")}, "malformed chunk extension", 1},
		{"endless chunk extension", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", maxChunkLine+1))}, "chunk extension too long", 1},
		{"chunk longer than its size", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n")}, "not followed by CRLF", 1},
		{"folded trailer", []segment{cli("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n x\r\n\r\n")}, "malformed trailer", 1},
		{"header too large in one piece", []segment{cli(bigHeader)}, "header section larger", 0},
		{"header too large in pieces", []segment{cli(bigHeader[:1000]), cli(bigHeader[1000:])}, "header section larger", 0},
		{"too many requests waiting", []segment{cli(manyRequests)}, "requests waiting", maxWaiting},
		{"response with no request", []segment{srv("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")}, "response 200 with no request", 0},
		{"response after the last one", []segment{
			cli("GET / HTTP/1.1\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 408 Request Timeout\r\n\r\n"),
		}, "response 408 with no request", 0},
		{"status code too long", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/1.1 2000 OK\r\n\r\n")}, "malformed status line", 1},
		{"status code too short", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/1.1 20 OK\r\n\r\n")}, "malformed status line", 1},
		{"status code below 100", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/1.1 099 Odd\r\n\r\n")}, "malformed status line", 1},
		{"HTTP/2 status line", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/2 200 OK\r\n\r\n")}, "malformed status line", 1},
		{"bad response length", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n")}, "malformed Content-Length", 1},
		{"bad response chunk", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n")}, "malformed chunk size", 1},
		{"unasked switch", []segment{cli("GET / HTTP/1.1\r\n\r\n"), srv("HTTP/1.1 101 Switching Protocols\r\n\r\n")}, "did not ask to upgrade", 1},
		{"too much held back", []segment{
			cli("GET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"),
			cli(strings.Repeat("t", maxHeldBytes)),
			cli("t"),
		}, "before the answer", 1},
		{"bad response while the request body arrives", []segment{
			cli("POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\npart"),
			srv("HTTP/1.1 500\r\nContent-Length: 1\r\nX\r\n\r\n"),
		}, "malformed header field", 1},
		{"bad held request after a refused upgrade", []segment{
			cli("GET /a HTTP/1.1\r\n\r\nGET /exec HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nnonsense\r\n\r\n"),
			srv("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
			srv("HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\n"),
		}, "malformed request line", 1},
	}
	// Good bytes on both sides after the error must change nothing.
	after := []segment{
		cli("GET /later HTTP/1.1\r\n\r\n"),
		srv("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			segs := append(append([]segment(nil), c.segs...), after...)
			l := &testLog{}
			s := New(l.begin)
			for _, seg := range segs {
				if seg.fromServer {
					s.Server(seg.data)
				} else {
					s.Client(seg.data)
				}
			}
			if s.Err() == nil || !strings.HasPrefix(s.Err().Error(), "h1: ") || !strings.Contains(s.Err().Error(), c.wantErr) {
				t.Fatalf("Err = %v, want an h1 error about %q", s.Err(), c.wantErr)
			}
			ended := 0
			for _, e := range l.exchanges {
				if e.ends != 1 {
					t.Errorf("exchange %d (%s %s): %d End calls before Close, want 1", e.id, e.req.Method, e.req.Path, e.ends)
				}
				if e.req.Path == "/later" {
					t.Errorf("bytes after the error were read")
				}
				if !e.complete {
					ended++
				}
			}
			if ended != c.ended {
				t.Errorf("%d exchanges ended incomplete, want %d", ended, c.ended)
			}
			s.Close()
			if len(l.problems) > 0 {
				t.Errorf("contract broken: %q", l.problems)
			}
			checkSplits(t, segs)
		})
	}
}

// TestHeaderValuesNotKept checks that header bytes buffered across chunks,
// Authorization among them, are zeroed once read, as are bytes held after
// a refused upgrade.
func TestHeaderValuesNotKept(t *testing.T) {
	const secret = "Bearer s3cr3t-t0ken"
	l := &testLog{}
	s := New(l.begin)
	s.Client([]byte("GET /exec HTTP/1.1\r\nAuthorization: " + secret + "\r\nConnection: Upgrade\r\n"))
	s.Client([]byte("Upgrade: x\r\n\r\nGET /next HTTP/1.1\r\nAuthorization: " + secret + "\r\n\r\n"))
	s.Server([]byte("HTTP/1.1 403 Forbidden\r\nSet-Cookie: " + secret + "\r\n"))
	s.Server([]byte("Content-Length: 0\r\n\r\n"))
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	if got := l.lines(); len(got) != 4 {
		t.Fatalf("reported %q, want two requests and a response", got)
	}
	for name, buf := range map[string][]byte{
		"client header": s.clientHead, "server header": s.serverHead,
		"held": s.held, "held spare": s.heldSpare,
	} {
		if bytes.Contains(buf[:cap(buf)], []byte("s3cr3t")) {
			t.Errorf("%s buffer still holds the credential", name)
		}
	}
}

// TestHeaderBufferReleased checks that a header buffer grown past
// passive.KeptBufferCap is dropped once its section is read, on both sides, so
// that one large header section does not pin its memory for the life of
// the connection, while a buffer of ordinary size is kept for the next
// header cut across chunks.
func TestHeaderBufferReleased(t *testing.T) {
	big := strings.Repeat("a", 900<<10)
	cases := []struct {
		name string
		segs []segment
		want []string
	}{
		{
			name: "large header sections",
			segs: []segment{
				cli("GET /big HTTP/1.1\r\nX-Big: " + big[:1000]),
				cli(big[1000:] + "\r\n\r\n"),
				srv("HTTP/1.1 200 OK\r\nX-Big: " + big[:1000]),
				srv(big[1000:] + "\r\nContent-Length: 2\r\n\r\nok"),
			},
			want: []string{"1 begin GET /big", "1 response 200", `1 respbody "ok"`, "1 end true"},
		},
		{
			// Small sections, but each gathered with the large body
			// that came in the same chunk as its end.
			name: "small header sections ending in large chunks",
			segs: []segment{
				cli("PUT /big HTTP/1.1\r\nContent-Len"),
				cli("gth: 921600\r\n\r\n" + big),
				srv("HTTP/1.1 200 OK\r\nContent-Len"),
				srv("gth: 921600\r\n\r\n" + big),
			},
			want: []string{
				"1 begin PUT /big", fmt.Sprintf("1 reqbody %q", big),
				"1 response 200", fmt.Sprintf("1 respbody %q", big), "1 end true",
			},
		},
	}
	// A small exchange with both header sections cut across chunks.
	small := []segment{
		cli("GET /small HTTP/1.1\r\nUser-Agent: ua/1\r"),
		cli("\n\r\n"),
		srv("HTTP/1.1 204 No Content\r\nX-A:"),
		srv(" 1\r\n\r\n"),
	}
	smallWant := []string{"2 begin GET /small ua=ua/1", "2 response 204", "2 end true"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := &testLog{}
			s := New(l.begin)
			feed := func(segs []segment) {
				for _, seg := range segs {
					if seg.fromServer {
						s.Server(seg.data)
					} else {
						s.Client(seg.data)
					}
				}
				if s.Err() != nil {
					t.Fatal(s.Err())
				}
			}
			feed(c.segs)
			if got := l.lines(); !slicesEqual(got, c.want) {
				t.Fatalf("reported\n%.300s\nwant\n%.300s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if cap(s.clientHead) != 0 || cap(s.serverHead) != 0 {
				t.Errorf("after the large sections the header buffers hold %d and %d bytes, want none", cap(s.clientHead), cap(s.serverHead))
			}
			feed(small)
			if got := l.lines()[len(c.want):]; !slicesEqual(got, smallWant) {
				t.Errorf("then reported %q, want %q", got, smallWant)
			}
			for name, buf := range map[string][]byte{"client": s.clientHead, "server": s.serverHead} {
				if n := cap(buf); n == 0 || n > passive.KeptBufferCap {
					t.Errorf("after a small section the %s header buffer holds %d bytes, want a small one kept for reuse", name, n)
				}
			}
			s.Close()
			if len(l.problems) > 0 {
				t.Errorf("contract broken: %q", l.problems)
			}
		})
	}
}

// TestRequestAllocations checks that reading a request costs one
// allocation, for its strings, and a response none, once the scanner has
// warmed up.
func TestRequestAllocations(t *testing.T) {
	req, resp := benchGET()
	var sink nopExchange
	s := New(func(passive.Request) passive.Exchange { return &sink })
	allocs := testing.AllocsPerRun(100, func() {
		s.Client(req)
		s.Server(resp)
	})
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	if allocs != 1 {
		t.Errorf("%v allocations per GET exchange, want 1", allocs)
	}
}

// --- The loopback relay: a real client, a real server, and a forwarder
// between them that hands the scanner every chunk before forwarding it.

type relayConn struct {
	mu       sync.Mutex
	log      testLog
	scanner  *Scanner
	segments []segment
	done     chan struct{}
	dialErr  error
}

type testRelay struct {
	addr  string
	conns chan *relayConn
}

func startRelay(t *testing.T, upstream string) *testRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &testRelay{addr: ln.Addr().String(), conns: make(chan *relayConn, 16)}
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go r.relay(client, upstream)
		}
	}()
	return r
}

func (r *testRelay) relay(client net.Conn, upstream string) {
	c := &relayConn{done: make(chan struct{})}
	c.scanner = New(c.log.begin)
	r.conns <- c
	defer close(c.done)
	server, err := net.Dial("tcp", upstream)
	if err != nil {
		c.dialErr = err
		client.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go c.pump(&wg, client, server, false)
	go c.pump(&wg, server, client, true)
	wg.Wait()
	client.Close()
	server.Close()
	c.mu.Lock()
	c.scanner.Close()
	c.mu.Unlock()
}

// pump copies one direction, feeding the scanner each chunk first. The
// lock keeps the two directions' calls apart, as a relay must.
func (c *relayConn) pump(wg *sync.WaitGroup, from, to net.Conn, fromServer bool) {
	defer wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			c.mu.Lock()
			c.segments = append(c.segments, segment{fromServer, bytes.Clone(buf[:n])})
			if fromServer {
				c.scanner.Server(buf[:n])
			} else {
				c.scanner.Client(buf[:n])
			}
			c.mu.Unlock()
			if _, err := to.Write(buf[:n]); err != nil {
				from.Close()
				to.Close()
				return
			}
		}
		if err != nil {
			to.(*net.TCPConn).CloseWrite()
			return
		}
	}
}

func (r *testRelay) next() *relayConn { return <-r.conns }

// finish waits for the connection to end and checks what every relay test
// expects: no error, the contract kept, and the same report however the
// recorded chunks are cut.
func (c *relayConn) finish(t *testing.T) *testLog {
	t.Helper()
	<-c.done
	if c.dialErr != nil {
		t.Fatal(c.dialErr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.scanner.Err(); err != nil {
		t.Fatalf("scanner: %v", err)
	}
	if len(c.log.problems) > 0 {
		t.Errorf("contract broken: %q", c.log.problems)
	}
	replayed, s := checkSplits(t, c.segments)
	if got, want := report(&c.log, c.scanner), report(replayed, s); got != want {
		t.Errorf("live report differs from its replay:\n%s\nreplay:\n%s", got, want)
	}
	return &c.log
}

func newClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{MaxConnsPerHost: 1, ExpectContinueTimeout: time.Minute, DisableCompression: true}
	return &http.Client{Transport: tr}, tr
}

func do(t *testing.T, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// exchangeOf checks an exchange's request line and completion.
func exchangeOf(t *testing.T, l *testLog, i int, method, path string, complete bool) *testExchange {
	t.Helper()
	if i >= len(l.exchanges) {
		t.Fatalf("exchange %d not reported; log:\n%s", i+1, strings.Join(l.lines(), "\n"))
	}
	e := l.exchanges[i]
	if e.req.Method != method || e.req.Path != path {
		t.Errorf("exchange %d is %s %s, want %s %s", i+1, e.req.Method, e.req.Path, method, path)
	}
	if e.ends != 1 || e.complete != complete {
		t.Errorf("exchange %d: %d End calls, complete %t; want complete %t", i+1, e.ends, e.complete, complete)
	}
	return e
}

func jsonBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"kind":"PodList","items":[`)
	for i := 0; b.Len() < n-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"pod-%d"}`, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

func TestRelayKeepAliveGETs(t *testing.T) {
	body := jsonBody(1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, tr := newClient()
	const ua = "kubectl/v1.34.1 (linux/amd64) kubernetes/abcdef0"
	for range 3 {
		req := newRequest(t, "GET", "http://"+relay.addr+"/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns&limit=500", nil)
		req.Header.Set("User-Agent", ua)
		req.Header.Set("Authorization", "Bearer not-recorded")
		if _, got := do(t, client, req); string(got) != body {
			t.Fatalf("client read %q", got)
		}
	}
	tr.CloseIdleConnections()
	l := relay.next().finish(t)
	if len(l.exchanges) != 3 {
		t.Fatalf("%d exchanges on the connection, want 3:\n%s", len(l.exchanges), strings.Join(l.lines(), "\n"))
	}
	for i := range 3 {
		e := exchangeOf(t, l, i, "GET", "/api/v1/namespaces/kube-system/pods", true)
		if e.req.RawQuery != "labelSelector=k8s-app%3Dkube-dns&limit=500" || e.req.UserAgent != ua || e.req.Upgrade {
			t.Errorf("request %d read as %+v", i+1, e.req)
		}
		if e.resp.Status != 200 || e.resp.ContentType != "application/json" || e.respBody.String() != body {
			t.Errorf("response %d read as %+v with body %q", i+1, e.resp, e.respBody.String())
		}
	}
}

// smallReads hands its content out at most max bytes a read, so that a
// chunked request body has many chunks.
type smallReads struct {
	r   io.Reader
	max int
}

func (s *smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.max)]) }

func TestRelayPOSTBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		fmt.Fprintf(w, "%v %d:", r.TransferEncoding, len(got))
		w.Write(got)
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, tr := newClient()

	lengthBody := strings.Repeat("0123456789", 3000)
	req := newRequest(t, "POST", "http://"+relay.addr+"/api/v1/namespaces/default/configmaps?fieldManager=kubectl", strings.NewReader(lengthBody))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	do(t, client, req)

	chunkedBody := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 700)
	req = newRequest(t, "PUT", "http://"+relay.addr+"/upload", &smallReads{strings.NewReader(chunkedBody), 1000})
	req.Header.Set("Content-Type", "application/x-test; v=1")
	resp, got := do(t, client, req)
	if !strings.HasPrefix(string(got), "[chunked] ") {
		t.Fatalf("the server did not read a chunked body: %q %v", got[:20], resp.TransferEncoding)
	}
	tr.CloseIdleConnections()

	l := relay.next().finish(t)
	e := exchangeOf(t, l, 0, "POST", "/api/v1/namespaces/default/configmaps", true)
	if e.req.RawQuery != "fieldManager=kubectl" || e.req.ContentType != "application/merge-patch+json" {
		t.Errorf("request read as %+v", e.req)
	}
	if e.reqBody.String() != lengthBody {
		t.Errorf("Content-Length body reported as %d bytes, want %d", e.reqBody.Len(), len(lengthBody))
	}
	if want := fmt.Sprintf("[] %d:%s", len(lengthBody), lengthBody); e.respBody.String() != want {
		t.Errorf("response body reported as %.40q…", e.respBody.String())
	}
	e = exchangeOf(t, l, 1, "PUT", "/upload", true)
	if e.req.ContentType != "application/x-test; v=1" || e.resp.ContentType != "application/x-test; v=1" {
		t.Errorf("content types read as %q and %q", e.req.ContentType, e.resp.ContentType)
	}
	if e.reqBody.String() != chunkedBody {
		t.Errorf("chunked body reported as %d bytes, want %d", e.reqBody.Len(), len(chunkedBody))
	}
	if e.respBody.String() != string(got) {
		t.Errorf("response body reported as %.40q…, client read %.40q…", e.respBody.String(), got)
	}
}

func TestRelayChunkedResponse(t *testing.T) {
	var sent strings.Builder
	for i := range 20 {
		fmt.Fprintf(&sent, "{\"type\":\"ADDED\",\"object\":{\"n\":%d,\"pad\":%q}}\n", i, strings.Repeat("x", i*37))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Trailer", "X-Count")
		for line := range strings.Lines(sent.String()) {
			io.WriteString(w, line)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Count", "20")
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, tr := newClient()
	resp, got := do(t, client, newRequest(t, "GET", "http://"+relay.addr+"/api/v1/pods?watch=true", nil))
	if string(got) != sent.String() || resp.Trailer.Get("X-Count") != "20" || resp.TransferEncoding == nil {
		t.Fatalf("client read %d bytes, trailer %v, coding %v", len(got), resp.Trailer, resp.TransferEncoding)
	}
	do(t, client, newRequest(t, "GET", "http://"+relay.addr+"/again", nil))
	tr.CloseIdleConnections()

	l := relay.next().finish(t)
	e := exchangeOf(t, l, 0, "GET", "/api/v1/pods", true)
	if e.respBody.String() != sent.String() {
		t.Errorf("chunked body reported as\n%q\nwant\n%q", e.respBody.String(), sent.String())
	}
	exchangeOf(t, l, 1, "GET", "/again", true)
}

func TestRelayNoBodyResponses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "1234")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.Header().Set("ETag", `"1"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "body after")
		}
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, tr := newClient()
	do(t, client, newRequest(t, "HEAD", "http://"+relay.addr+"/head", nil))
	do(t, client, newRequest(t, "DELETE", "http://"+relay.addr+"/nocontent", nil))
	do(t, client, newRequest(t, "GET", "http://"+relay.addr+"/notmodified", nil))
	do(t, client, newRequest(t, "GET", "http://"+relay.addr+"/ok", nil))
	tr.CloseIdleConnections()

	l := relay.next().finish(t)
	for i, want := range []struct {
		method, path string
		status       int
	}{{"HEAD", "/head", 200}, {"DELETE", "/nocontent", 204}, {"GET", "/notmodified", 304}} {
		e := exchangeOf(t, l, i, want.method, want.path, true)
		if e.resp.Status != want.status || e.respBody.Len() != 0 {
			t.Errorf("%s read as %d with body %q", want.path, e.resp.Status, e.respBody.String())
		}
	}
	if e := exchangeOf(t, l, 3, "GET", "/ok", true); e.respBody.String() != "body after" {
		t.Errorf("last body reported as %q", e.respBody.String())
	}
}

func TestRelayExpectContinue(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "read %d", len(got))
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, tr := newClient()
	body := strings.Repeat("payload ", 500)
	req := newRequest(t, "POST", "http://"+relay.addr+"/continue", strings.NewReader(body))
	req.Header.Set("Expect", "100-continue")
	if _, got := do(t, client, req); string(got) != fmt.Sprintf("read %d", len(body)) {
		t.Fatalf("client read %q", got)
	}
	tr.CloseIdleConnections()
	c := relay.next()
	l := c.finish(t)
	if !bytes.Contains(joinSide(c.segments, true), []byte("HTTP/1.1 100 Continue\r\n")) {
		t.Fatal("the server sent no 100 Continue")
	}
	e := exchangeOf(t, l, 0, "POST", "/continue", true)
	if e.responses != 1 || e.resp.Status != 200 || e.reqBody.String() != body {
		t.Errorf("read %d responses, status %d, %d body bytes", e.responses, e.resp.Status, e.reqBody.Len())
	}
}

// rawExchange writes what a raw TCP client sends in one write and reads
// n responses.
func rawExchange(t *testing.T, addr, send string, n int) (*bufio.Reader, net.Conn, []string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, send); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var bodies []string
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		bodies = append(bodies, fmt.Sprintf("%d %s", resp.StatusCode, body))
	}
	return br, conn, bodies
}

func TestRelayPipelined(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s?%s %s", r.Method, r.URL.Path, r.URL.RawQuery, got)
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	send := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET http://x/d?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
	_, conn, bodies := rawExchange(t, relay.addr, send, 4)
	conn.Close()
	want := []string{"200 GET /a? ", "200 POST /b? hello", "200 POST /c? abc", "200 GET /d?q=1 "}
	if !slicesEqual(bodies, want) {
		t.Fatalf("client read %q", bodies)
	}
	l := relay.next().finish(t)
	for i, path := range []string{"/a", "/b", "/c", "/d"} {
		e := exchangeOf(t, l, i, strings.Fields(want[i])[1], path, true)
		if got := fmt.Sprintf("%d %s", e.resp.Status, e.respBody.String()); got != want[i] {
			t.Errorf("exchange %d paired with %q", i+1, got)
		}
	}
	if e := l.exchanges[3]; e.req.RawQuery != "q=1" {
		t.Errorf("absolute-form query read as %q", e.req.RawQuery)
	}
}

func TestRelayUntilClose(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Go's server answers without a length and closes the
		// connection when asked for the identity coding.
		w.Header().Set("Transfer-Encoding", "identity")
		w.Header().Set("Content-Type", "text/plain")
		for i := range 5 {
			fmt.Fprintf(w, "log line %d\n", i)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, _ := newClient()
	resp, got := do(t, client, newRequest(t, "GET", "http://"+relay.addr+"/api/v1/namespaces/x/pods/y/log?follow=true", nil))
	if resp.ContentLength != -1 || resp.TransferEncoding != nil {
		t.Fatalf("response framed by length %d or coding %v", resp.ContentLength, resp.TransferEncoding)
	}
	l := relay.next().finish(t)
	e := exchangeOf(t, l, 0, "GET", "/api/v1/namespaces/x/pods/y/log", true)
	if e.respBody.String() != string(got) || e.resp.ContentType != "text/plain" {
		t.Errorf("body reported as %q, client read %q", e.respBody.String(), got)
	}
}

// upgradeServer switches to an echo protocol: for each line the client
// sends it answers "pong " and the line. The bytes the client sent before
// the switch are answered first, so that they are read before the 101
// leaves the server.
func upgradeServer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "no upgrade")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		var early string
		if r.Header.Get("X-Early-Line") == "yes" {
			line, _ := brw.ReadString('\n')
			early = "pong " + line
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n" + early)
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("pong " + line)
			brw.Flush()
		}
	}))
}

func TestRelayUpgrade(t *testing.T) {
	srv := upgradeServer(t)
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	client, _ := newClient()
	req := newRequest(t, "GET", "http://"+relay.addr+"/api/v1/namespaces/x/pods/y/exec?command=sh", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tunnel := resp.Body.(io.ReadWriteCloser)
	br := bufio.NewReader(tunnel)
	for _, line := range []string{"ping 1\n", "ping 2\n"} {
		io.WriteString(tunnel, line)
		if got, _ := br.ReadString('\n'); got != "pong "+line {
			t.Fatalf("tunnel answered %q", got)
		}
	}
	tunnel.Close()
	l := relay.next().finish(t)
	e := exchangeOf(t, l, 0, "GET", "/api/v1/namespaces/x/pods/y/exec", false)
	if !e.req.Upgrade || e.req.RawQuery != "command=sh" || e.resp.Status != 101 {
		t.Errorf("read %+v answered %d", e.req, e.resp.Status)
	}
	if e.reqBody.String() != "ping 1\nping 2\n" || e.respBody.String() != "pong ping 1\npong ping 2\n" {
		t.Errorf("tunnel bytes reported as %q and %q", e.reqBody.String(), e.respBody.String())
	}
}

func TestRelayUpgradeEarlyBytes(t *testing.T) {
	srv := upgradeServer(t)
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	br, conn, _ := rawExchange(t, relay.addr, "GET /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Early-Line: yes\r\n\r\nearly\n", 0)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("answer %v %v", resp, err)
	}
	io.WriteString(conn, "late\n")
	got, _ := io.ReadAll(io.LimitReader(br, int64(len("pong early\npong late\n"))))
	conn.Close()
	if string(got) != "pong early\npong late\n" {
		t.Fatalf("tunnel answered %q", got)
	}
	l := relay.next().finish(t)
	e := exchangeOf(t, l, 0, "GET", "/exec", false)
	if e.reqBody.String() != "early\nlate\n" || e.respBody.String() != "pong early\npong late\n" {
		t.Errorf("tunnel bytes reported as %q and %q", e.reqBody.String(), e.respBody.String())
	}
}

func TestRelayUpgradeRefused(t *testing.T) {
	srv := upgradeServer(t)
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())

	// A net/http client waits for the refusal, then reuses the connection.
	client, tr := newClient()
	req := newRequest(t, "GET", "http://"+relay.addr+"/exec", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "other")
	if resp, _ := do(t, client, req); resp.StatusCode != 400 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	do(t, client, newRequest(t, "GET", "http://"+relay.addr+"/next", nil))
	tr.CloseIdleConnections()
	l := relay.next().finish(t)
	if e := exchangeOf(t, l, 0, "GET", "/exec", true); !e.req.Upgrade || e.resp.Status != 400 || e.respBody.String() != "no upgrade" {
		t.Errorf("refusal read as %+v %q", e.resp, e.respBody.String())
	}
	exchangeOf(t, l, 1, "GET", "/next", true)

	// A raw client sends the next request without waiting.
	_, conn, bodies := rawExchange(t, relay.addr, "GET /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n"+
		"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	conn.Close()
	if bodies[0] != "400 no upgrade" || bodies[1] != "400 no upgrade" {
		t.Fatalf("client read %q", bodies)
	}
	l = relay.next().finish(t)
	exchangeOf(t, l, 0, "GET", "/exec", true)
	if e := exchangeOf(t, l, 1, "GET", "/after", true); e.resp.Status != 400 || e.req.Upgrade {
		t.Errorf("second request read as %+v answered %d", e.req, e.resp.Status)
	}
}

func TestRelayCONNECT(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "CONNECT" {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	defer srv.Close()
	relay := startRelay(t, srv.Listener.Addr().String())
	br, conn, _ := rawExchange(t, relay.addr, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", 0)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer %v %v", resp, err)
	}
	const opaque = "opaque \x00\xff bytes"
	io.WriteString(conn, opaque)
	got, _ := io.ReadAll(io.LimitReader(br, int64(len(opaque))))
	conn.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, br)
	conn.Close()
	if string(got) != opaque {
		t.Fatalf("tunnel echoed %q", got)
	}
	l := relay.next().finish(t)
	e := exchangeOf(t, l, 0, "CONNECT", "example.test:443", false)
	if e.resp.Status != 200 || e.reqBody.String() != string(got) || e.respBody.String() != string(got) {
		t.Errorf("tunnel read as %d, %q, %q", e.resp.Status, e.reqBody.String(), e.respBody.String())
	}
}

func joinSide(segs []segment, fromServer bool) []byte {
	var b []byte
	for _, seg := range segs {
		if seg.fromServer == fromServer {
			b = append(b, seg.data...)
		}
	}
	return b
}

// scheduleOf encodes how segs interleave, in FuzzScanner's terms.
func scheduleOf(segs []segment) []byte {
	var schedule []byte
	for _, seg := range segs {
		side := byte(0)
		if seg.fromServer {
			side = 1
		}
		for n := len(seg.data); n > 0; n -= 127 {
			schedule = append(schedule, byte(min(n, 127))<<1|side)
		}
	}
	return schedule
}

// interleave cuts the two sides' streams into segments: each schedule byte
// takes (b>>1) bytes, or all that is left when that is 0, from the server
// when b&1 is 1, else from the client. What the schedule leaves comes last,
// client first.
func interleave(client, server, schedule []byte) []segment {
	var segs []segment
	for _, b := range schedule {
		from := &client
		if b&1 == 1 {
			from = &server
		}
		n := int(b >> 1)
		if n == 0 || n > len(*from) {
			n = len(*from)
		}
		if n > 0 {
			segs = append(segs, segment{b&1 == 1, (*from)[:n]})
			*from = (*from)[n:]
		}
	}
	if len(client) > 0 {
		segs = append(segs, segment{false, client})
	}
	if len(server) > 0 {
		segs = append(segs, segment{true, server})
	}
	return segs
}

// FuzzScanner feeds any two byte streams in any interleaving: the scanner
// must not panic, must keep the Exchange contract (every begun exchange
// ended exactly once by Close, nothing after End, an error ending all at
// once), and must report the same whether each segment comes whole or a
// byte at a time.
func FuzzScanner(f *testing.F) {
	for _, sc := range scenarios {
		f.Add(joinSide(sc.segs, false), joinSide(sc.segs, true), scheduleOf(sc.segs))
	}
	req, resp := benchGET()
	f.Add(req, resp, []byte{0, 1})
	f.Fuzz(func(t *testing.T, client, server, schedule []byte) {
		segs := interleave(client, server, schedule)
		l, s := replay(segs, whole, 3)
		want := report(l, s)
		if len(l.problems) > 0 {
			t.Fatalf("contract broken:\n%s", want)
		}
		if got := report(replay(segs, byteByByte, 3)); got != want {
			t.Fatalf("byte by byte reports\n%s\nwhole segments report\n%s", got, want)
		}
	})
}

// --- Benchmarks.

// nopExchange counts what it is told and keeps nothing.
type nopExchange struct{ bodyBytes, ends int }

func (e *nopExchange) RequestBody(p []byte)      { e.bodyBytes += len(p) }
func (e *nopExchange) Response(passive.Response) {}
func (e *nopExchange) ResponseBody(p []byte)     { e.bodyBytes += len(p) }
func (e *nopExchange) End(bool)                  { e.ends++ }
func (e *nopExchange) Refused()                  { e.ends++ }

func nopBegin(e *nopExchange) passive.Begin {
	return func(passive.Request) passive.Exchange { return e }
}

// benchGET is a typical kubectl GET and the API server's answer: some 300
// bytes of request header, a 1 KiB JSON body with a Content-Length.
func benchGET() (request, response []byte) {
	request = []byte("GET /api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns&limit=500 HTTP/1.1\r\n" +
		"Host: 10.96.0.1:443\r\n" +
		"User-Agent: kubectl/v1.34.1 (linux/amd64) kubernetes/abcdef0\r\n" +
		"Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json\r\n" +
		"Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl\r\n" +
		"Kubectl-Command: kubectl get\r\n" +
		"Accept-Encoding: gzip\r\n\r\n")
	body := jsonBody(1024)
	response = []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\n"+
		"Audit-Id: 3f8e2c8a-6a39-4c0e-9b0e-1d2f3a4b5c6d\r\n"+
		"Cache-Control: no-cache, private\r\n"+
		"Content-Type: application/json\r\n"+
		"X-Kubernetes-Pf-Flowschema-Uid: 6d1f0e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6\r\n"+
		"X-Kubernetes-Pf-Prioritylevel-Uid: 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\r\n"+
		"Date: Mon, 03 Aug 2026 10:00:00 GMT\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(body), body))
	return request, response
}

func BenchmarkGETExchange(b *testing.B) {
	req, resp := benchGET()
	var e nopExchange
	s := New(nopBegin(&e))
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		s.Client(req)
		s.Server(resp)
		n++
	}
	if s.Err() != nil || e.ends != n {
		b.Fatalf("%d of %d exchanges ended; Err = %v", e.ends, n, s.Err())
	}
}

// BenchmarkChunkedList reads a 100 KiB list answered in 4 KiB chunks, handed
// to the scanner in 4 KiB reads as a relay would.
func BenchmarkChunkedList(b *testing.B) {
	req, _ := benchGET()
	chunk := bytes.Repeat([]byte("x"), 4096)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 25 {
		resp = fmt.Appendf(resp, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	resp = append(resp, "0\r\n\r\n"...)
	var e nopExchange
	s := New(nopBegin(&e))
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		s.Client(req)
		for p := resp; len(p) > 0; {
			read := min(len(p), 4096)
			s.Server(p[:read])
			p = p[read:]
		}
		n++
	}
	if s.Err() != nil || e.ends != n || e.bodyBytes != n*25*4096 {
		b.Fatalf("%d of %d exchanges ended with %d body bytes; Err = %v", e.ends, n, e.bodyBytes, s.Err())
	}
}
