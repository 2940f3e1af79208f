package h1

import "errors"

// framer takes a message body's transfer framing off (RFC 9112 sections 6
// and 7.1) one chunk of bytes at a time, wherever the chunks are cut, and
// without buffering: chunk-size lines and trailers are read a byte at a
// time and dropped, data is handed back as slices of the input.
type framer struct {
	state frameState
	// left is what remains of the body (by length) or of the chunk.
	left uint64
	// digits counts the chunk size's hex digits, to refuse a size that
	// would overflow.
	digits int
	// lineBytes counts a chunk extension's or the trailer section's bytes:
	// neither is kept, but neither may be endless.
	lineBytes int
}

type frameState uint8

const (
	frameLength       frameState = iota // Content-Length data
	frameChunkSize                      // hex digits of a chunk size
	frameChunkSpace                     // whitespace after the size, before ";"
	frameChunkExt                       // chunk extensions, after ";"
	frameChunkSizeLF                    // the LF ending a chunk-size line
	frameChunkData                      // chunk data
	frameChunkDataCR                    // the CRLF after chunk data
	frameChunkDataLF                    // its LF
	frameTrailerStart                   // the start of a trailer line, or the empty line
	frameTrailerLine                    // inside a trailer field line
	frameTrailerEndLF                   // the LF of the final empty line
)

// Go's own chunked reader refuses chunk lines longer than this.
const maxChunkLine = 4096

var (
	errBadChunkSize  = errors.New("h1: malformed chunk size")
	errBigChunk      = errors.New("h1: chunk size too large")
	errBadChunkExt   = errors.New("h1: malformed chunk extension")
	errLongChunkLine = errors.New("h1: chunk extension too long")
	errBadChunkEnd   = errors.New("h1: chunk data not followed by CRLF")
	errBadTrailer    = errors.New("h1: malformed trailer section")
	errBigTrailer    = errors.New("h1: trailer section too large")
)

// startLength reads a body of n > 0 bytes.
func (f *framer) startLength(n int64) {
	*f = framer{state: frameLength, left: uint64(n)}
}

// startChunked reads a chunked body.
func (f *framer) startChunked() {
	*f = framer{state: frameChunkSize}
}

// next reads p up to the next piece of body data or the body's end. It
// returns that data (a slice of p, possibly empty), how many bytes of p it
// read (data included), and whether the body is complete.
func (f *framer) next(p []byte) (data []byte, n int, done bool, err error) {
	for n < len(p) {
		switch f.state {
		case frameLength, frameChunkData:
			k := uint64(len(p) - n)
			if k > f.left {
				k = f.left
			}
			data = p[n : n+int(k)]
			n += int(k)
			f.left -= k
			if f.left == 0 {
				if f.state == frameLength {
					return data, n, true, nil
				}
				f.state = frameChunkDataCR
			}
			return data, n, false, nil
		}

		c := p[n]
		n++
		switch f.state {
		case frameChunkSize:
			if v, ok := hexValue(c); ok {
				if f.digits == 15 {
					return nil, n, false, errBigChunk
				}
				f.left = f.left<<4 | uint64(v)
				f.digits++
				continue
			}
			if f.digits == 0 {
				return nil, n, false, errBadChunkSize
			}
			switch c {
			case ' ', '\t':
				f.state = frameChunkSpace
			case ';':
				f.state = frameChunkExt
			case '\r':
				f.state = frameChunkSizeLF
			case '\n':
				f.chunkLineEnd()
			default:
				return nil, n, false, errBadChunkSize
			}
		case frameChunkSpace, frameChunkExt:
			switch {
			case c == '\r':
				f.state = frameChunkSizeLF
			case c == '\n':
				f.chunkLineEnd()
				continue
			case (c < ' ' && c != '\t') || c == 0x7f:
				return nil, n, false, errBadChunkExt
			case f.state == frameChunkSpace && c == ';':
				f.state = frameChunkExt
			case f.state == frameChunkSpace && c != ' ' && c != '\t':
				return nil, n, false, errBadChunkExt
			}
			if f.lineBytes++; f.lineBytes > maxChunkLine {
				return nil, n, false, errLongChunkLine
			}
		case frameChunkSizeLF:
			if c != '\n' {
				return nil, n, false, errBadChunkSize
			}
			f.chunkLineEnd()
		case frameChunkDataCR:
			switch c {
			case '\r':
				f.state = frameChunkDataLF
			case '\n':
				f.startChunked()
			default:
				return nil, n, false, errBadChunkEnd
			}
		case frameChunkDataLF:
			if c != '\n' {
				return nil, n, false, errBadChunkEnd
			}
			f.startChunked()
		case frameTrailerStart:
			switch c {
			case '\r':
				f.state = frameTrailerEndLF
			case '\n':
				return nil, n, true, nil
			case ' ', '\t':
				return nil, n, false, errBadTrailer
			default:
				f.state = frameTrailerLine
			}
			if f.lineBytes++; f.lineBytes > maxHeaderBytes {
				return nil, n, false, errBigTrailer
			}
		case frameTrailerLine:
			if c == '\n' {
				f.state = frameTrailerStart
			}
			if f.lineBytes++; f.lineBytes > maxHeaderBytes {
				return nil, n, false, errBigTrailer
			}
		case frameTrailerEndLF:
			if c != '\n' {
				return nil, n, false, errBadTrailer
			}
			return nil, n, true, nil
		}
	}
	return nil, n, false, nil
}

// chunkLineEnd moves past a chunk-size line: to the chunk's data, or to
// the trailer section after the last chunk.
func (f *framer) chunkLineEnd() {
	f.lineBytes = 0
	if f.left == 0 {
		f.state = frameTrailerStart
		return
	}
	f.state = frameChunkData
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
