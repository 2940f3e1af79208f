// Package h1 reads HTTP/1.1 exchanges off the bytes a relay copies between
// a client and a server (see package passive): requests and responses with
// their bodies as RFC 9112 frames them, pipelined requests answered in
// order, and connections that switch to another protocol (101, CONNECT).
//
// Only header sections are buffered, and only while one is cut across
// chunks, as are (up to 64 KiB) the bytes a client sends after an Upgrade
// or CONNECT request before its answer says whether they are requests or
// the new protocol's. Bodies are reported as slices of the chunks. Header
// values other than those passive.Request and passive.Response carry are
// looked at in place and never copied, and buffered header bytes are
// zeroed once read, because they hold credentials.
package h1

import (
	"errors"
	"fmt"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/passive"
)

const (
	// maxHeaderBytes bounds a header section (start line, fields, empty
	// line) and a chunked body's trailer section.
	maxHeaderBytes = 1 << 20
	// maxHeldBytes bounds what a client may send after an Upgrade or
	// CONNECT request before the answer says what those bytes are.
	maxHeldBytes = 64 << 10
	// maxWaiting bounds the requests read but not yet answered: each costs
	// an exchange, and no real client pipelines this deep.
	maxWaiting = 4096
)

var (
	errHeaderTooLarge = fmt.Errorf("h1: header section larger than %d bytes", maxHeaderBytes)
	errHeldTooLarge   = fmt.Errorf("h1: client sent more than %d bytes before the answer to its Upgrade or CONNECT request", maxHeldBytes)
	errTooManyWaiting = fmt.Errorf("h1: more than %d requests waiting for their responses", maxWaiting)
	errUnaskedSwitch  = errors.New("h1: 101 Switching Protocols answers a request that did not ask to upgrade")
)

// responseNoRequest formats the error of a response no request is waiting
// for, with its status code.
const responseNoRequest = "h1: response %d with no request waiting for it"

// Scanner reads one HTTP/1.x connection; see passive.Scanner.
type Scanner struct {
	begin passive.Begin
	err   error
	// stopped says every later byte is ignored: after an error or Close.
	stopped bool

	// waiting holds the exchanges whose responses are not complete, oldest
	// first: HTTP/1.1 answers requests in the order they came.
	waiting []*exchange
	// free keeps ended exchanges for reuse, so that a connection's
	// exchanges cost no allocation once it has had a few.
	free []*exchange

	client      clientState
	clientHead  []byte // a request header section cut across chunks
	clientBody  framer
	clientHeadP head
	// current is the exchange whose request body is being read, held or
	// tunnelled; nil once its exchange has ended, when the rest of its
	// body is read but no longer reported.
	current *exchange
	// held is what the client sent after an Upgrade or CONNECT request,
	// before its answer: tunnel bytes after a switch, more requests
	// otherwise. heldSpare is the other of two buffers that take turns
	// while held bytes are read again as requests.
	held, heldSpare []byte

	server      serverState
	serverHead  []byte // a response header section cut across chunks
	serverBody  framer
	serverHeadP head
}

// exchange is one request and its response.
type exchange struct {
	ex passive.Exchange // nil when Begin ignored the exchange
	// What the request says about its response's framing.
	isHEAD, isCONNECT, upgrade bool
	// responded says its final (or 101) response header has been read.
	responded bool
	// tunnel says the connection switched protocols with this exchange.
	tunnel bool
}

type clientState uint8

const (
	clientHeader clientState = iota // reading a request header section
	clientBody                      // reading a request body
	clientHeld                      // holding bytes until an Upgrade or CONNECT is answered
	clientTunnel                    // every byte is tunnel data
)

type serverState uint8

const (
	serverHeader     serverState = iota // reading a response header section
	serverBody                          // reading a framed response body
	serverUntilClose                    // the body lasts until the connection closes
	serverTunnel                        // every byte is tunnel data
)

// New returns a Scanner that reports each request through begin.
func New(begin passive.Begin) *Scanner {
	return &Scanner{begin: begin}
}

var _ passive.Scanner = (*Scanner)(nil)

// Err is why the scanner stopped reading, or nil.
func (s *Scanner) Err() error { return s.err }

// Client reads bytes the client sent.
func (s *Scanner) Client(p []byte) {
	if !s.stopped {
		s.readClient(p)
	}
}

// Server reads bytes the server sent.
func (s *Scanner) Server(p []byte) {
	if !s.stopped {
		s.readServer(p)
	}
}

// Close ends the exchanges still open: a response read until the
// connection closed is complete now, every other one is not.
func (s *Scanner) Close() {
	if s.stopped {
		return
	}
	s.stopped = true
	untilClose := s.server == serverUntilClose
	// Every one ends with End, never Refused: HTTP/1.1 has no way for a
	// server to say it did not process a request, and a request it leaves
	// unanswered when it closes the connection may have been processed
	// all the same (RFC 9112 9.3.1), so only its client can tell whether
	// it is safe to send again.
	for i, e := range s.waiting {
		s.end(e, i == 0 && untilClose)
	}
	s.release()
}

// fail stops the scanner: what follows err cannot be framed, so every open
// exchange ends incomplete and every later byte is ignored.
func (s *Scanner) fail(err error) {
	if s.stopped {
		return
	}
	s.err = err
	s.stopped = true
	for _, e := range s.waiting {
		s.end(e, false)
	}
	s.release()
}

// release drops what a stopped scanner holds, zeroing buffered bytes that
// may hold credentials.
func (s *Scanner) release() {
	clear(s.waiting)
	s.waiting = nil
	s.free = nil
	s.current = nil
	for _, b := range [][]byte{s.clientHead, s.serverHead, s.held, s.heldSpare} {
		clear(b)
	}
	s.clientHead, s.serverHead, s.held, s.heldSpare = nil, nil, nil, nil
}

func (s *Scanner) end(e *exchange, complete bool) {
	if s.current == e {
		s.current = nil
	}
	if e.ex != nil {
		e.ex.End(complete)
	}
	*e = exchange{}
	s.free = append(s.free, e)
}

func (s *Scanner) readClient(p []byte) {
	for len(p) > 0 && !s.stopped {
		switch s.client {
		case clientHeader:
			p = s.readRequestHead(p)
		case clientBody:
			data, n, done, err := s.clientBody.next(p)
			p = p[n:]
			if err != nil {
				s.fail(err)
				return
			}
			if e := s.current; len(data) > 0 && e != nil && e.ex != nil {
				e.ex.RequestBody(data)
			}
			if done {
				s.requestDone()
			}
		case clientHeld:
			if len(s.held)+len(p) > maxHeldBytes {
				s.fail(errHeldTooLarge)
				return
			}
			s.held = append(s.held, p...)
			return
		case clientTunnel:
			if e := s.current; e != nil && e.ex != nil {
				e.ex.RequestBody(p)
			}
			return
		}
	}
}

// readRequestHead reads p into a request header section and returns what
// follows it. A section that a chunk holds whole is read in place; one cut
// across chunks is gathered in clientHead first.
func (s *Scanner) readRequestHead(p []byte) []byte {
	h := &s.clientHeadP
	if len(s.clientHead) == 0 {
		// Empty lines before a request line are ignored (RFC 9112
		// section 2.2): some clients send a CRLF after a body.
		for len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
			p = p[1:]
		}
		if len(p) == 0 {
			return nil
		}
		window := p[:min(len(p), maxHeaderBytes)]
		n, err := parseHead(window, h, true)
		switch {
		case err != nil:
			s.fail(err)
			return nil
		case n > 0:
			s.startRequest(h)
			return p[n:]
		case len(window) == maxHeaderBytes:
			s.fail(errHeaderTooLarge)
			return nil
		}
		s.clientHead = append(s.clientHead, p...)
		return nil
	}
	n, rest, ok := s.gather(&s.clientHead, p)
	if !ok {
		return nil
	}
	if _, err := parseHead(s.clientHead[:n], h, true); err != nil {
		s.fail(err)
		return nil
	}
	s.startRequest(h)
	// startRequest has copied what it keeps; the rest may be credentials.
	s.clientHead = passive.Emptied(s.clientHead)
	return rest
}

// gather appends p to a header section cut across chunks. When the section
// is complete it returns its length in *buf and what follows it in p;
// otherwise ok is false (and the scanner may have failed on its size).
func (s *Scanner) gather(buf *[]byte, p []byte) (n int, rest []byte, ok bool) {
	had := len(*buf)
	take := p[:min(len(p), maxHeaderBytes-had)]
	*buf = append(*buf, take...)
	// The empty line may begin up to two bytes before the new ones.
	n = headerEnd(*buf, max(0, had-2))
	if n < 0 {
		if len(*buf) >= maxHeaderBytes {
			s.fail(errHeaderTooLarge)
		}
		return 0, nil, false
	}
	return n, p[n-had:], true
}

// startRequest begins the exchange of a request header section and sets
// up the reading of its body.
func (s *Scanner) startRequest(h *head) {
	if len(s.waiting) >= maxWaiting {
		s.fail(errTooManyWaiting)
		return
	}
	req, err := request(h)
	if err != nil {
		s.fail(err)
		return
	}
	var e *exchange
	if n := len(s.free); n > 0 {
		e, s.free = s.free[n-1], s.free[:n-1]
	} else {
		e = new(exchange)
	}
	e.isHEAD = req.Method == "HEAD"
	e.isCONNECT = req.Method == "CONNECT"
	e.upgrade = h.upgrade
	if s.begin != nil {
		e.ex = s.begin(req)
	}
	s.waiting = append(s.waiting, e)
	s.current = e
	// RFC 9112 section 6.3: chunked (the last coding, which head has
	// checked) wins over Content-Length; without either there is no body.
	switch {
	case h.transferCoded:
		s.clientBody.startChunked()
		s.client = clientBody
	case h.length > 0:
		s.clientBody.startLength(h.length)
		s.client = clientBody
	default:
		s.requestDone()
	}
}

// requestDone moves the client side past a request's body.
func (s *Scanner) requestDone() {
	e := s.current
	switch {
	case e == nil:
		// Its response is complete already.
		s.client = clientHeader
	case e.tunnel:
		s.client = clientTunnel
	case (e.upgrade || e.isCONNECT) && !e.responded:
		// Until the answer, what follows may be the new protocol.
		s.client = clientHeld
	default:
		s.current = nil
		s.client = clientHeader
	}
}

func (s *Scanner) readServer(p []byte) {
	for len(p) > 0 && !s.stopped {
		switch s.server {
		case serverHeader:
			p = s.readResponseHead(p)
		case serverBody:
			data, n, done, err := s.serverBody.next(p)
			p = p[n:]
			if err != nil {
				s.fail(err)
				return
			}
			if e := s.waiting[0]; len(data) > 0 && e.ex != nil {
				e.ex.ResponseBody(data)
			}
			if done {
				s.responseDone()
			}
		case serverUntilClose, serverTunnel:
			if e := s.waiting[0]; e.ex != nil {
				e.ex.ResponseBody(p)
			}
			return
		}
	}
}

// readResponseHead is readRequestHead for the server's side.
func (s *Scanner) readResponseHead(p []byte) []byte {
	h := &s.serverHeadP
	if len(s.serverHead) == 0 {
		window := p[:min(len(p), maxHeaderBytes)]
		n, err := parseHead(window, h, false)
		switch {
		case err != nil:
			s.fail(err)
			return nil
		case n > 0:
			s.startResponse(h)
			return p[n:]
		case len(window) == maxHeaderBytes:
			s.fail(errHeaderTooLarge)
			return nil
		}
		s.serverHead = append(s.serverHead, p...)
		return nil
	}
	n, rest, ok := s.gather(&s.serverHead, p)
	if !ok {
		return nil
	}
	if _, err := parseHead(s.serverHead[:n], h, false); err != nil {
		s.fail(err)
		return nil
	}
	s.startResponse(h)
	s.serverHead = passive.Emptied(s.serverHead)
	return rest
}

// startResponse pairs a response header section with the oldest waiting
// request and sets up the reading of its body (RFC 9112 section 6.3).
func (s *Scanner) startResponse(h *head) {
	if len(s.waiting) == 0 {
		s.fail(fmt.Errorf(responseNoRequest, h.status))
		return
	}
	e := s.waiting[0]
	switch {
	case h.status == 101:
		if !e.upgrade {
			s.fail(errUnaskedSwitch)
			return
		}
		s.startTunnel(e, h)
		return
	case h.status < 200:
		// Informational (100 Continue, 103): the final response follows.
		return
	case e.isCONNECT && h.status < 300:
		s.startTunnel(e, h)
		return
	}
	// Bytes held back for this request's answer are requests after all.
	heldForThis := s.client == clientHeld && s.current == e
	e.responded = true
	if e.ex != nil {
		e.ex.Response(response(h))
	}
	switch {
	case e.isHEAD || h.status == 204 || h.status == 304:
		s.responseDone()
	case h.transferCoded && h.chunked:
		s.serverBody.startChunked()
		s.server = serverBody
	case h.transferCoded:
		// A coding other than chunked last: only the close ends it.
		s.server = serverUntilClose
	case h.length == 0:
		s.responseDone()
	case h.length > 0:
		s.serverBody.startLength(h.length)
		s.server = serverBody
	default:
		s.server = serverUntilClose
	}
	if heldForThis {
		s.replayHeld()
	}
}

// startTunnel switches the connection to another protocol: every later
// byte either side sends belongs to e, until the connection closes.
func (s *Scanner) startTunnel(e *exchange, h *head) {
	e.responded = true
	e.tunnel = true
	if e.ex != nil {
		e.ex.Response(response(h))
	}
	s.server = serverTunnel
	if s.client == clientHeld && s.current == e {
		s.client = clientTunnel
		if len(s.held) > 0 && e.ex != nil {
			e.ex.RequestBody(s.held)
		}
		clear(s.held)
		s.held = s.held[:0]
	}
	// Otherwise the request's body is still arriving, and requestDone
	// moves the client side into the tunnel after it.
}

// replayHeld reads the bytes held after an Upgrade or CONNECT request that
// was not switched as the requests they are.
func (s *Scanner) replayHeld() {
	held := s.held
	s.held, s.heldSpare = s.heldSpare[:0], nil
	s.current = nil
	s.client = clientHeader
	s.readClient(held)
	if s.stopped {
		clear(held)
		return
	}
	clear(held)
	s.heldSpare = held[:0]
}

// responseDone ends the oldest waiting exchange: its response is complete.
func (s *Scanner) responseDone() {
	e := s.waiting[0]
	copy(s.waiting, s.waiting[1:])
	s.waiting[len(s.waiting)-1] = nil
	s.waiting = s.waiting[:len(s.waiting)-1]
	s.server = serverHeader
	s.end(e, true)
}

// request builds what Begin is told of a request. Its strings share one
// allocation; common methods and media types cost none.
func request(h *head) (passive.Request, error) {
	path, query, err := target(h.method, h.target)
	if err != nil {
		return passive.Request{}, err
	}
	method, methodKnown := knownMethod(h.method)
	contentType, typeKnown := knownMediaType(h.contentType)
	size := len(path) + len(query) + len(h.userAgent)
	if !methodKnown {
		size += len(h.method)
	}
	if !typeKnown {
		size += len(h.contentType)
	}
	var b strings.Builder
	b.Grow(size)
	b.Write(path)
	b.Write(query)
	b.Write(h.userAgent)
	if !typeKnown {
		b.Write(h.contentType)
	}
	if !methodKnown {
		b.Write(h.method)
	}
	all := b.String()
	cut := func(n int) string {
		part := all[:n]
		all = all[n:]
		return part
	}
	r := passive.Request{
		Path:      cut(len(path)),
		RawQuery:  cut(len(query)),
		UserAgent: cut(len(h.userAgent)),
		Upgrade:   h.upgrade,
	}
	if !typeKnown {
		contentType = cut(len(h.contentType))
	}
	if !methodKnown {
		method = cut(len(h.method))
	}
	r.Method, r.ContentType = method, contentType
	return r, nil
}

var slash = []byte("/")

// target splits a request target into its path and query, as sent.
func target(method, t []byte) (path, query []byte, err error) {
	switch {
	case t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		// asterisk-form, for OPTIONS: the whole server.
		return t, nil, nil
	case string(method) == "CONNECT":
		// authority-form: host and port, which Path carries.
		return t, nil, nil
	default:
		// absolute-form: scheme "://" authority, then the path.
		i := 0
		for i < len(t) && isSchemeByte(t[i], i == 0) {
			i++
		}
		if i == 0 || len(t) < i+3 || string(t[i:i+3]) != "://" {
			return nil, nil, errBadRequestTarget
		}
		t = t[i+3:]
		j := 0
		for j < len(t) && t[j] != '/' && t[j] != '?' {
			j++
		}
		t = t[j:]
		if len(t) == 0 || t[0] == '?' {
			// An empty path is "/" (RFC 9112 section 3.2.1).
			path, query, _ = cutQuery(t)
			return slash, query, nil
		}
	}
	path, query, _ = cutQuery(t)
	return path, query, nil
}

func cutQuery(t []byte) (path, query []byte, found bool) {
	for i, c := range t {
		if c == '?' {
			return t[:i], t[i+1:], true
		}
	}
	return t, nil, false
}

// isSchemeByte follows RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isSchemeByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return true
	case first:
		return false
	}
	return ('0' <= c && c <= '9') || c == '+' || c == '-' || c == '.'
}

// response builds what Exchange.Response is told.
func response(h *head) passive.Response {
	r := passive.Response{Status: h.status}
	if h.hasContentType {
		if known, ok := knownMediaType(h.contentType); ok {
			r.ContentType = known
		} else {
			r.ContentType = string(h.contentType)
		}
	}
	if h.hasContentEncoding {
		if known, ok := knownCoding(h.contentEncoding); ok {
			r.ContentEncoding = known
		} else {
			r.ContentEncoding = string(h.contentEncoding)
		}
	}
	return r
}

// knownMethod returns a constant for a common method, so that reporting it
// costs no allocation.
func knownMethod(m []byte) (string, bool) {
	switch string(m) {
	case "GET":
		return "GET", true
	case "POST":
		return "POST", true
	case "PUT":
		return "PUT", true
	case "PATCH":
		return "PATCH", true
	case "DELETE":
		return "DELETE", true
	case "HEAD":
		return "HEAD", true
	case "OPTIONS":
		return "OPTIONS", true
	case "CONNECT":
		return "CONNECT", true
	}
	return "", false
}

// knownMediaType returns a constant for the media types the Kubernetes
// API server and its clients send most; an absent one is known as "".
func knownMediaType(t []byte) (string, bool) {
	switch string(t) {
	case "":
		return "", true
	case "application/json":
		return "application/json", true
	case "application/vnd.kubernetes.protobuf":
		return "application/vnd.kubernetes.protobuf", true
	case "application/vnd.kubernetes.protobuf;stream=watch":
		return "application/vnd.kubernetes.protobuf;stream=watch", true
	case "application/json;stream=watch":
		return "application/json;stream=watch", true
	case "application/cbor":
		return "application/cbor", true
	case "application/cbor-seq":
		return "application/cbor-seq", true
	case "application/yaml":
		return "application/yaml", true
	case "application/merge-patch+json":
		return "application/merge-patch+json", true
	case "application/strategic-merge-patch+json":
		return "application/strategic-merge-patch+json", true
	case "application/json-patch+json":
		return "application/json-patch+json", true
	case "application/apply-patch+yaml":
		return "application/apply-patch+yaml", true
	case "text/plain; charset=utf-8":
		return "text/plain; charset=utf-8", true
	}
	return "", false
}

func knownCoding(c []byte) (string, bool) {
	switch string(c) {
	case "gzip":
		return "gzip", true
	case "deflate":
		return "deflate", true
	case "br":
		return "br", true
	case "zstd":
		return "zstd", true
	}
	return "", false
}
