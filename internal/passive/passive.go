// Package passive reads HTTP exchanges off the bytes of a connection that a
// relay copies between a client and a server, without changing or holding
// back a byte: the relay hands every chunk it forwards to a Scanner, which
// tells an Exchange what each request and response was. The protocols live
// in sub-packages: h1 (HTTP/1.1) and h2 (HTTP/2).
//
// A scanner never fails the connection it reads. Bytes it cannot make sense
// of end its reading of that connection (Scanner.Err says why), and the
// relay keeps copying them.
package passive

// Request is what an exchange's request says, as far as recording needs it.
// No other header is kept: a scanner hands on no credentials, though
// HTTP/2's header compression tables hold the values the peers index.
type Request struct {
	Method string
	// Path is the request target's path, still escaped as sent (for a
	// CONNECT that asks no Upgrade, its host:port): decoding is the
	// caller's, as the server decodes it. RawQuery is what follows "?",
	// without it.
	Path     string
	RawQuery string
	// UserAgent and ContentType are those headers' first values.
	UserAgent   string
	ContentType string
	// Upgrade says the request asks to switch protocols: HTTP/1.1's
	// "Connection: Upgrade" (exec, attach, port-forward), or HTTP/2's
	// extended CONNECT (a :protocol pseudo-header).
	Upgrade bool
}

// Response is what an exchange's final response header says.
type Response struct {
	// Status is the final status code: 101 for a protocol switch, else
	// 200 or above. Informational responses (100 Continue, 103) are not
	// reported.
	Status          int
	ContentType     string
	ContentEncoding string
}

// Exchange receives what a scanner reads of one request and its response,
// in this order: RequestBody (any number of times) interleaved with
// Response at most once and then ResponseBody (any number of times), and
// End or Refused exactly once. After a 101 response, RequestBody and
// ResponseBody carry the raw bytes of the switched protocol, client's and
// server's. Bodies are as decoded from the transfer framing (no chunk
// sizes, no HTTP/2 frame headers or padding) and are only valid during the
// call.
type Exchange interface {
	RequestBody(p []byte)
	Response(r Response)
	ResponseBody(p []byte)
	// End says the exchange is over: complete says the response is (its
	// end was read, or it was delimited by the connection's close); false
	// means the stream was reset or the connection ended first.
	End(complete bool)
	// Refused ends, instead of End, a request the server says it did not
	// process: an HTTP/2 stream it reset with REFUSED_STREAM, or one above
	// the last stream ID of its GOAWAY. The client may send it again, on
	// this connection or another, where it is read as a new exchange.
	Refused()
}

// Begin starts an exchange when a request's header has been read; it may
// return nil to ignore the exchange.
type Begin func(Request) Exchange

// Scanner reads one connection's bytes. Client and Server are given, in
// order, every byte the client sent and the server sent; the relay calls
// them before it forwards the bytes, and never concurrently. Close, when the
// connection is over, ends the exchanges still open: End(true) for a
// response that the close delimits, End(false) for the others.
type Scanner interface {
	Client(p []byte)
	Server(p []byte)
	Close()
	// Err is why the scanner stopped reading, or nil while it reads.
	Err() error
}

// KeptBufferCap is the largest header buffer a scanner keeps for reuse
// once the header bytes it held are read. One unusually large header
// section or block, or a large chunk gathered with a small one, would
// otherwise pin its memory for the rest of a connection that may live for
// days.
const KeptBufferCap = 64 << 10

// Emptied zeroes a header buffer that has been read, because header bytes
// hold credentials, and returns it empty for reuse, or nil when it grew
// beyond KeptBufferCap: the next header then starts a small one. Only the
// buffer's length is zeroed; its callers keep the bytes past it zero.
func Emptied(buf []byte) []byte {
	clear(buf)
	if cap(buf) > KeptBufferCap {
		return nil
	}
	return buf[:0]
}
