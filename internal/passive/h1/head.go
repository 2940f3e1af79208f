package h1

import (
	"bytes"
	"errors"

	"golang.org/x/net/http/httpguts"
)

// head is what a request or response header section says that framing and
// recording need. Its byte slices point into the bytes it was parsed from,
// so it is used before those bytes are reused or cleared; every other
// field's value is looked at only where it lies and never copied.
type head struct {
	// Request line.
	method, target []byte
	// Status line.
	status int

	http10 bool

	userAgent, contentType, contentEncoding []byte
	hasUserAgent, hasContentType            bool
	hasContentEncoding                      bool

	// upgrade says a Connection field lists "upgrade".
	upgrade bool
	// length is the Content-Length, or -1 without one.
	length int64
	// transferCoded says a Transfer-Encoding field is present; chunked
	// says its last coding is chunked.
	transferCoded, chunked bool
}

var (
	errBadRequestLine   = errors.New("h1: malformed request line")
	errBadRequestTarget = errors.New("h1: malformed request target")
	errBadStatusLine    = errors.New("h1: malformed status line")
	errBadField         = errors.New("h1: malformed header field")
	errObsFold          = errors.New("h1: header field folded over lines (obsolete line folding)")
	errBadFieldValue    = errors.New("h1: control character in a header field value")
	errBadLength        = errors.New("h1: malformed Content-Length")
	errConflictLength   = errors.New("h1: conflicting Content-Length values")
	errRequestCoding    = errors.New("h1: request Transfer-Encoding does not end in chunked")
	errHTTP10Coding     = errors.New("h1: Transfer-Encoding in an HTTP/1.0 message")
)

// parseHead reads the header section at the start of b: the start line
// (a request line when request is true, else a status line) and the field
// lines up to the first empty line. It returns the section's length, or 0
// when b does not hold all of it yet. Errors are returned only with a
// complete section, so that a header cut anywhere reads the same as a
// whole one.
func parseHead(b []byte, h *head, request bool) (int, error) {
	*h = head{length: -1}
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		return 0, nil
	}
	var err error
	if request {
		err = h.requestLine(trimCR(b[:eol]))
	} else {
		err = h.statusLine(trimCR(b[:eol]))
	}
	pos := eol + 1
	for {
		eol := bytes.IndexByte(b[pos:], '\n')
		if eol < 0 {
			return 0, nil
		}
		line := trimCR(b[pos : pos+eol])
		pos += eol + 1
		if len(line) == 0 {
			break
		}
		if err == nil {
			err = h.field(line)
		}
	}
	if err == nil {
		err = h.framingError(request)
	}
	return pos, err
}

// headerEnd returns the length of the header section at the start of b (up
// to and including the LF of its empty line), or -1 when b does not hold
// it yet. It looks at line ends from index from on, so that a growing
// buffer is searched once.
func headerEnd(b []byte, from int) int {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1
		}
		i += from
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
		from = i + 1
	}
}

// trimCR drops the CR of a CRLF line ending. A lone LF ends a line too, as
// RFC 9112 section 2.2 allows and Go's own server reads it.
func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// requestLine reads "method SP request-target SP HTTP-version".
func (h *head) requestLine(line []byte) error {
	method, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || !isToken(method) {
		return errBadRequestLine
	}
	target, version, ok := bytes.Cut(rest, []byte{' '})
	if !ok || len(target) == 0 {
		return errBadRequestLine
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return errBadRequestTarget
		}
	}
	minor, ok := httpVersion(version)
	if !ok {
		return errBadRequestLine
	}
	h.method, h.target, h.http10 = method, target, minor == 0
	return nil
}

// statusLine reads "HTTP-version SP status-code [SP reason-phrase]"; the
// space before an empty reason is optional, as Go's client reads it.
func (h *head) statusLine(line []byte) error {
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return errBadStatusLine
	}
	minor, ok := httpVersion(line[:8])
	if !ok {
		return errBadStatusLine
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadStatusLine
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return errBadStatusLine
	}
	h.status, h.http10 = status, minor == 0
	return nil
}

// httpVersion reads "HTTP/1.x" and returns x.
func httpVersion(v []byte) (minor byte, ok bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." || v[7] < '0' || v[7] > '9' {
		return 0, false
	}
	return v[7] - '0', true
}

// field reads one field line. Only the fields that framing and recording
// need are looked at past their names.
func (h *head) field(line []byte) error {
	colon := 0
	for colon < len(line) && httpguts.IsTokenRune(rune(line[colon])) {
		colon++
	}
	switch {
	case line[0] == ' ' || line[0] == '\t':
		return errObsFold
	case colon == 0 || colon == len(line) || line[colon] != ':':
		return errBadField
	}
	name := line[:colon]
	value := func() []byte { return trimOWS(line[colon+1:]) }
	switch len(name) {
	case len("user-agent"): // and "connection"
		if equalFold(name, "user-agent") {
			if !h.hasUserAgent {
				h.userAgent, h.hasUserAgent = value(), true
				return checkValue(h.userAgent)
			}
		} else if equalFold(name, "connection") && listHas(value(), "upgrade") {
			h.upgrade = true
		}
	case len("content-type"):
		if equalFold(name, "content-type") && !h.hasContentType {
			h.contentType, h.hasContentType = value(), true
			return checkValue(h.contentType)
		}
	case len("content-encoding"):
		if equalFold(name, "content-encoding") && !h.hasContentEncoding {
			h.contentEncoding, h.hasContentEncoding = value(), true
			return checkValue(h.contentEncoding)
		}
	case len("content-length"):
		if equalFold(name, "content-length") {
			return h.contentLength(value())
		}
	case len("transfer-encoding"):
		if equalFold(name, "transfer-encoding") {
			h.transferCoding(value())
		}
	}
	return nil
}

// contentLength reads a Content-Length value. A list of identical values,
// in one field or several, is one length (RFC 9110 section 8.6); anything
// else that is not a number is an error, because the message's end would be
// a guess.
func (h *head) contentLength(value []byte) error {
	for element := range bytes.SplitSeq(value, []byte{','}) {
		element = trimOWS(element)
		if len(element) == 0 {
			return errBadLength
		}
		var n int64
		for _, c := range element {
			if c < '0' || c > '9' || n > (1<<62)/10 {
				return errBadLength
			}
			n = n*10 + int64(c-'0')
		}
		if h.length >= 0 && h.length != n {
			return errConflictLength
		}
		h.length = n
	}
	return nil
}

// transferCoding notes whether the last transfer coding listed so far is
// chunked; the codings of several fields form one list.
func (h *head) transferCoding(value []byte) {
	h.transferCoded = true
	for element := range bytes.SplitSeq(value, []byte{','}) {
		if element = trimOWS(element); len(element) > 0 {
			h.chunked = equalFold(element, "chunked")
		}
	}
}

// framingError applies the rules of RFC 9112 section 6 that make a header
// section's framing unreadable: a request must end its codings with
// chunked, and HTTP/1.0 has no transfer codings at all.
func (h *head) framingError(request bool) error {
	switch {
	case h.transferCoded && h.http10:
		return errHTTP10Coding
	case h.transferCoded && request && !h.chunked:
		return errRequestCoding
	}
	return nil
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// checkValue refuses control characters in a value that is going to be
// kept: a bare CR or a NUL would otherwise end up in a recorded string.
func checkValue(v []byte) error {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return errBadFieldValue
		}
	}
	return nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with lower-case ASCII s, ignoring b's case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// listHas says whether a comma-separated list holds token, ignoring case.
func listHas(list []byte, token string) bool {
	for element := range bytes.SplitSeq(list, []byte{','}) {
		if equalFold(trimOWS(element), token) {
			return true
		}
	}
	return false
}
