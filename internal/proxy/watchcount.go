package proxy

import (
	"encoding/binary"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/match"
)

// isWatch reports whether a request is a watch, by the API server's own
// rules (info is match.NewRequestInfo's): a "watch" query parameter it reads
// as true on a collection, or the deprecated /watch/ path prefix.
func isWatch(info match.RequestInfo) bool {
	return info.Verb == "watch"
}

// eventCounter counts the events of a watch stream as its bytes pass by,
// without buffering them.
type eventCounter interface {
	feed(p []byte)
	count() int64
}

// newEventCounter picks a counter for a watch response's media type, or nil
// when events cannot be counted cheaply: compressed streams and CBOR
// sequences (whose items carry no length prefix) are left at zero.
func newEventCounter(contentType, contentEncoding string) eventCounter {
	if contentEncoding != "" && !strings.EqualFold(contentEncoding, "identity") {
		return nil
	}
	mediaType, params, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mediaType)) {
	case "application/json":
		return &jsonEventCounter{}
	case "application/vnd.kubernetes.protobuf":
		// The watch stream of protobuf is length-prefixed frames; a
		// protobuf response without stream=watch is a single object.
		if strings.Contains(strings.ReplaceAll(params, " ", ""), "stream=watch") {
			return &lengthPrefixedCounter{}
		}
	}
	return nil
}

// jsonEventCounter counts top-level JSON values: the API server writes one
// object per watch event. Tracking nesting and strings, rather than
// counting newlines, keeps the count right for ?pretty=true streams and for
// events split across writes.
type jsonEventCounter struct {
	depth    int
	inString bool
	escaped  bool
	events   int64
}

func (c *jsonEventCounter) feed(p []byte) {
	for _, b := range p {
		if c.inString {
			switch {
			case c.escaped:
				c.escaped = false
			case b == '\\':
				c.escaped = true
			case b == '"':
				c.inString = false
			}
			continue
		}
		switch b {
		case '"':
			c.inString = true
		case '{', '[':
			c.depth++
		case '}', ']':
			c.depth--
			if c.depth == 0 {
				c.events++
			}
		}
	}
}

func (c *jsonEventCounter) count() int64 { return c.events }

// lengthPrefixedCounter counts frames of a stream where each frame is a
// 4-byte big-endian length followed by that many bytes, as the API server
// frames protobuf watch events.
type lengthPrefixedCounter struct {
	header    [4]byte
	have      int
	remaining uint32
	events    int64
}

func (c *lengthPrefixedCounter) feed(p []byte) {
	for len(p) > 0 {
		if c.remaining > 0 {
			n := uint32(len(p))
			if n > c.remaining {
				n = c.remaining
			}
			c.remaining -= n
			p = p[n:]
			continue
		}
		c.header[c.have] = p[0]
		c.have++
		p = p[1:]
		if c.have == len(c.header) {
			c.remaining = binary.BigEndian.Uint32(c.header[:])
			c.have = 0
			c.events++
		}
	}
}

func (c *lengthPrefixedCounter) count() int64 { return c.events }
