// Package h2 reads HTTP/2 exchanges (RFC 9113, header compression RFC 7541)
// off the plaintext a relay copies between a client and a server.
//
// The scanner follows the frames of both directions as the bytes pass. It
// buffers nothing but header blocks: DATA payloads are handed on as they
// arrive, without their padding. Every header block of a direction goes
// through that direction's HPACK decoder, wanted or not, because the
// decoders' dynamic tables must stay in step with the peers'. Of the
// decoded fields the scanner keeps only the few that passive.Request and
// passive.Response carry, and an encoded block is zeroed once decoded. The
// decoders' dynamic tables still hold the values the peers chose to index
// (credentials among them), as the peers' own tables do.
package h2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"apisnoop.dev/kube-apisnoop/internal/passive"
)

const (
	frameHeaderLen = 9

	// maxHeaderBlock bounds the only thing the scanner buffers: one header
	// block, counted as the payloads of its HEADERS or PUSH_PROMISE frame
	// and CONTINUATION frames. Real blocks are a few hundred bytes; a
	// larger one is taken as an attack on the relay's memory.
	maxHeaderBlock = 1 << 20

	// initialHeaderTableSize is the HPACK dynamic table size both peers
	// start with (RFC 9113 6.5.2).
	initialHeaderTableSize = 4096
)

// capture says which fields of the header block being decoded are kept.
type capture uint8

const (
	captureNothing capture = iota
	captureRequest
	captureResponse
)

// Bits of Scanner.seen: which kept fields have had their first value, so
// that a later repeat (or an empty first value) does not replace it.
const (
	seenMethod = 1 << iota
	seenPath
	seenUserAgent
	seenContentType
	seenStatus
	seenContentEncoding
	seenProtocol
	seenAuthority
)

// stream is an exchange in progress.
type stream struct {
	exchange passive.Exchange
	// requestDone: the client ended its side; later client DATA is not
	// the request's.
	requestDone bool
	// responded: the final response was reported, so server DATA is its
	// body and later server HEADERS are trailers.
	responded bool
}

// direction is the reading state of one side's bytes.
type direction struct {
	client  bool
	decoder *hpack.Decoder

	// prefaceLeft counts the bytes of the client connection preface still
	// to be checked; always zero on the server side.
	prefaceLeft int

	// header collects a frame header split across chunks.
	header    [frameHeaderLen]byte
	headerLen int

	// The frame being read.
	inPayload bool
	frameType http2.FrameType
	flags     http2.Flags
	streamID  uint32
	length    uint32
	left      uint32 // payload bytes not read yet

	// DATA frame: padLengthPending means the pad length byte is still to
	// come; dataLeft counts the data bytes after it, the rest is padding.
	padLengthPending bool
	dataLeft         uint32
	// bodyOf receives this DATA frame's data, or is nil when nobody does.
	bodyOf passive.Exchange

	// The header block being collected. Each frame's payload is appended
	// whole at fragmentStart and cut down to its fragment (no padding,
	// priority or promised stream) when the frame ends.
	block          []byte
	fragmentStart  int
	continuing     bool // the next frame must be a CONTINUATION of the block
	blockType      http2.FrameType
	blockStream    uint32
	blockEndStream bool

	// SETTINGS frame being read.
	setting          [6]byte
	settingLen       int
	settingTableSize uint32
	settingHasTable  bool

	// RST_STREAM or GOAWAY frame being read: the first four bytes of its
	// payload, the error code of the one and the last stream ID of the
	// other, gathered however the frame is cut.
	word    [4]byte
	wordLen int

	// The SETTINGS_HEADER_TABLE_SIZE this side announced bounds the
	// dynamic table of the other side's encoder, that is, of the decoder
	// reading the other side's header blocks. Until the other side
	// acknowledges a new value either value may be in force, so the bound
	// applied is the larger until then.
	tableSize       uint32 // latest value announced
	tableSizeBound  uint32 // bound applied to the other side's decoder
	unackedSettings int
}

// Scanner reads the HTTP/2 exchanges of one connection. It implements
// passive.Scanner.
type Scanner struct {
	begin  passive.Begin
	client direction
	server direction

	streams map[uint32]stream
	// lastClientStream is the highest stream the client opened; a client
	// HEADERS on a stream at or below it that has no exchange belongs to
	// a closed or ignored stream.
	lastClientStream uint32
	// serverLastStream is the lowest last stream ID of the server's GOAWAY
	// frames, or math.MaxUint32 before any: the server processes no stream
	// above it, open already or opened later by a client that had not yet
	// read the GOAWAY.
	serverLastStream uint32

	err    error
	closed bool

	// What the decoder's emit function keeps of the block being decoded.
	capture capture
	seen    uint8
	request passive.Request
	// authority is a request's :authority, the target of a CONNECT.
	authority string
	status    string
	resp      passive.Response
}

var _ passive.Scanner = (*Scanner)(nil)

// New returns a scanner for one connection that reports each request it
// reads to begin.
func New(begin passive.Begin) *Scanner {
	s := &Scanner{begin: begin, streams: make(map[uint32]stream), serverLastStream: math.MaxUint32}
	s.client = direction{client: true, prefaceLeft: len(http2.ClientPreface)}
	for _, d := range []*direction{&s.client, &s.server} {
		d.decoder = hpack.NewDecoder(initialHeaderTableSize, s.field)
		d.tableSize = initialHeaderTableSize
		d.tableSizeBound = initialHeaderTableSize
	}
	return s
}

// Client reads bytes the client sent.
func (s *Scanner) Client(p []byte) { s.read(&s.client, p) }

// Server reads bytes the server sent.
func (s *Scanner) Server(p []byte) { s.read(&s.server, p) }

// Err says why the scanner stopped reading, or is nil.
func (s *Scanner) Err() error { return s.err }

// Close ends every exchange still open, incomplete. Bytes given after it
// are ignored.
func (s *Scanner) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.endAll()
}

// name says which side d reads, for errors.
func (d *direction) name() string {
	if d.client {
		return "client"
	}
	return "server"
}

func (s *Scanner) peer(d *direction) *direction {
	if d.client {
		return &s.server
	}
	return &s.client
}

func (s *Scanner) read(d *direction, p []byte) {
	for len(p) > 0 && s.err == nil && !s.closed {
		switch {
		case d.prefaceLeft > 0:
			n := min(len(p), d.prefaceLeft)
			at := len(http2.ClientPreface) - d.prefaceLeft
			if string(p[:n]) != http2.ClientPreface[at:at+n] {
				s.fail(errors.New("h2: client did not send the HTTP/2 connection preface"))
				return
			}
			d.prefaceLeft -= n
			p = p[n:]
		case !d.inPayload:
			if d.headerLen == 0 && len(p) >= frameHeaderLen {
				s.startFrame(d, p[:frameHeaderLen])
				p = p[frameHeaderLen:]
				continue
			}
			n := copy(d.header[d.headerLen:], p)
			d.headerLen += n
			p = p[n:]
			if d.headerLen == frameHeaderLen {
				d.headerLen = 0
				s.startFrame(d, d.header[:])
			}
		default:
			n := uint32(min(uint64(len(p)), uint64(d.left)))
			s.payload(d, p[:n])
			p = p[n:]
			d.left -= n
			if d.left == 0 && s.err == nil {
				s.endFrame(d)
			}
		}
	}
}

func (s *Scanner) startFrame(d *direction, h []byte) {
	d.length = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	d.left = d.length
	d.frameType = http2.FrameType(h[3])
	d.flags = http2.Flags(h[4])
	d.streamID = binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	d.inPayload = true

	// RFC 9113 6.2: a header block is a contiguous sequence of frames.
	if d.continuing && (d.frameType != http2.FrameContinuation || d.streamID != d.blockStream) {
		s.fail(fmt.Errorf("h2: %s sent %v on stream %d inside the header block of stream %d", d.name(), d.frameType, d.streamID, d.blockStream))
		return
	}
	switch d.frameType {
	case http2.FrameData:
		if d.streamID == 0 {
			s.fail(fmt.Errorf("h2: %s sent DATA on stream 0", d.name()))
			return
		}
		d.padLengthPending = d.flags.Has(http2.FlagDataPadded)
		if d.padLengthPending && d.length == 0 {
			s.fail(fmt.Errorf("h2: %s sent a padded DATA frame without a pad length", d.name()))
			return
		}
		d.dataLeft = d.length
		d.bodyOf = s.bodyOf(d)
	case http2.FrameHeaders, http2.FramePushPromise:
		if d.streamID == 0 {
			s.fail(fmt.Errorf("h2: %s sent %v on stream 0", d.name(), d.frameType))
			return
		}
		if d.frameType == http2.FramePushPromise && d.client {
			s.fail(errors.New("h2: client sent PUSH_PROMISE"))
			return
		}
		d.block = d.block[:0]
		d.blockType = d.frameType
		d.blockStream = d.streamID
		d.blockEndStream = d.frameType == http2.FrameHeaders && d.flags.Has(http2.FlagHeadersEndStream)
		s.startFragment(d)
	case http2.FrameContinuation:
		if !d.continuing {
			s.fail(fmt.Errorf("h2: %s sent CONTINUATION on stream %d outside a header block", d.name(), d.streamID))
			return
		}
		s.startFragment(d)
	case http2.FrameSettings:
		ack := d.flags.Has(http2.FlagSettingsAck)
		switch {
		case d.streamID != 0:
			s.fail(fmt.Errorf("h2: %s sent SETTINGS on stream %d", d.name(), d.streamID))
		case ack && d.length != 0:
			s.fail(fmt.Errorf("h2: %s sent a SETTINGS acknowledgement with a payload", d.name()))
		case d.length%6 != 0:
			s.fail(fmt.Errorf("h2: %s sent SETTINGS of %d bytes, not a multiple of 6", d.name(), d.length))
		}
		d.settingHasTable = false
	case http2.FrameRSTStream:
		if d.streamID == 0 || d.length != 4 {
			s.fail(fmt.Errorf("h2: %s sent a malformed RST_STREAM (stream %d, %d bytes)", d.name(), d.streamID, d.length))
			return
		}
		d.wordLen = 0
	case http2.FrameGoAway:
		// Last stream ID and error code, then any debug data.
		if d.streamID != 0 || d.length < 8 {
			s.fail(fmt.Errorf("h2: %s sent a malformed GOAWAY (stream %d, %d bytes)", d.name(), d.streamID, d.length))
			return
		}
		d.wordLen = 0
	}
	if s.err == nil && d.left == 0 {
		s.endFrame(d)
	}
}

// bodyOf returns the exchange that the DATA frame d is reading belongs to,
// or nil when the frame's data is nobody's.
func (s *Scanner) bodyOf(d *direction) passive.Exchange {
	st, ok := s.streams[d.streamID]
	if !ok || (d.client && st.requestDone) || (!d.client && !st.responded) {
		return nil
	}
	return st.exchange
}

func (s *Scanner) startFragment(d *direction) {
	if uint64(len(d.block))+uint64(d.length) > maxHeaderBlock {
		s.fail(fmt.Errorf("h2: %s header block on stream %d is larger than %d bytes", d.name(), d.blockStream, maxHeaderBlock))
		return
	}
	d.fragmentStart = len(d.block)
}

func (s *Scanner) payload(d *direction, p []byte) {
	switch d.frameType {
	case http2.FrameData:
		s.data(d, p)
	case http2.FrameHeaders, http2.FramePushPromise, http2.FrameContinuation:
		d.block = append(d.block, p...)
	case http2.FrameRSTStream, http2.FrameGoAway:
		d.wordLen += copy(d.word[d.wordLen:], p)
	case http2.FrameSettings:
		for _, b := range p {
			d.setting[d.settingLen] = b
			d.settingLen++
			if d.settingLen == len(d.setting) {
				d.settingLen = 0
				if http2.SettingID(binary.BigEndian.Uint16(d.setting[:2])) == http2.SettingHeaderTableSize {
					d.settingTableSize = binary.BigEndian.Uint32(d.setting[2:])
					d.settingHasTable = true
				}
			}
		}
	}
}

func (s *Scanner) data(d *direction, p []byte) {
	if d.padLengthPending {
		d.padLengthPending = false
		padding := uint32(p[0])
		p = p[1:]
		if padding > d.length-1 {
			s.fail(fmt.Errorf("h2: %s DATA frame on stream %d has %d bytes of padding in a %d-byte payload", d.name(), d.streamID, padding, d.length))
			return
		}
		d.dataLeft = d.length - 1 - padding
	}
	n := uint32(min(uint64(len(p)), uint64(d.dataLeft)))
	if n == 0 {
		return
	}
	d.dataLeft -= n
	if d.bodyOf == nil {
		return
	}
	if d.client {
		d.bodyOf.RequestBody(p[:n])
	} else {
		d.bodyOf.ResponseBody(p[:n])
	}
}

func (s *Scanner) endFrame(d *direction) {
	d.inPayload = false
	switch d.frameType {
	case http2.FrameData:
		d.bodyOf = nil
		if d.flags.Has(http2.FlagDataEndStream) {
			s.endStream(d, d.streamID)
		}
	case http2.FrameHeaders, http2.FramePushPromise, http2.FrameContinuation:
		s.endFragment(d)
	case http2.FrameSettings:
		if d.flags.Has(http2.FlagSettingsAck) {
			s.settingsAcknowledged(s.peer(d))
		} else {
			s.settingsAnnounced(d)
		}
	case http2.FrameRSTStream:
		st, ok := s.streams[d.streamID]
		if !ok {
			return
		}
		s.forget(d.streamID)
		// REFUSED_STREAM (RFC 9113 8.7) is the server saying it did not
		// process the request, which the client may then send again.
		if !d.client && http2.ErrCode(binary.BigEndian.Uint32(d.word[:])) == http2.ErrCodeRefusedStream {
			refuse(st)
		} else {
			st.exchange.End(false)
		}
	case http2.FrameGoAway:
		// A client's GOAWAY is about the streams the server opens, pushed
		// ones, which are no exchanges: it changes nothing here.
		if !d.client {
			s.serverGoAway(binary.BigEndian.Uint32(d.word[:]) & (1<<31 - 1))
		}
	}
}

// serverGoAway handles the server's GOAWAY with last stream ID last: it
// did not process and will not process any stream above it (RFC 9113 6.8).
// A server that shuts down gracefully sends two, the first with the
// largest ID, and may not raise the ID in a later one.
func (s *Scanner) serverGoAway(last uint32) {
	if last >= s.serverLastStream {
		return
	}
	s.serverLastStream = last
	for _, id := range s.openStreamsAbove(last) {
		st := s.streams[id]
		s.forget(id)
		refuse(st)
	}
}

// refuse ends the exchange of a stream the server says it did not process.
// One whose response was reported already was processed whatever the
// server says now, and its client does not send it again: that stream was
// only cut short.
func refuse(st stream) {
	if st.responded {
		st.exchange.End(false)
		return
	}
	st.exchange.Refused()
}

// endStream handles END_STREAM from d on stream id. The server's ends the
// exchange; the client's only ends the request.
func (s *Scanner) endStream(d *direction, id uint32) {
	st, ok := s.streams[id]
	if !ok {
		return
	}
	if d.client {
		st.requestDone = true
		s.streams[id] = st
		return
	}
	s.forget(id)
	st.exchange.End(st.responded)
}

// forget drops stream id, also as the receiver of a DATA frame the other
// direction may be in the middle of: bodyOf is only set while a direction
// reads a DATA frame, whose stream is its streamID.
func (s *Scanner) forget(id uint32) {
	delete(s.streams, id)
	if s.client.streamID == id {
		s.client.bodyOf = nil
	}
	if s.server.streamID == id {
		s.server.bodyOf = nil
	}
}

func (s *Scanner) endFragment(d *direction) {
	if d.frameType != http2.FrameContinuation {
		// Cut the frame's payload down to its fragment (RFC 9113 6.2, 6.6):
		// [pad length] [priority or promised stream] fragment [padding].
		payload := d.block[d.fragmentStart:]
		skip, padding := 0, 0
		padded := d.flags.Has(http2.FlagHeadersPadded)
		if d.frameType == http2.FramePushPromise {
			padded = d.flags.Has(http2.FlagPushPromisePadded)
		}
		if padded {
			if len(payload) == 0 {
				s.fail(fmt.Errorf("h2: %s padded %v frame on stream %d has no pad length", d.name(), d.frameType, d.streamID))
				return
			}
			skip, padding = 1, int(payload[0])
		}
		if d.frameType == http2.FrameHeaders && d.flags.Has(http2.FlagHeadersPriority) {
			skip += 5
		}
		if d.frameType == http2.FramePushPromise {
			skip += 4
		}
		if skip+padding > len(payload) {
			s.fail(fmt.Errorf("h2: %s %v frame on stream %d is %d bytes, too short for its %d bytes of padding and fields", d.name(), d.frameType, d.streamID, len(payload), skip+padding))
			return
		}
		if skip+padding > 0 {
			n := copy(payload, payload[skip:len(payload)-padding])
			// Zero what the cut leaves past the block's end, so that
			// clearing the block clears every byte of it the buffer held.
			clear(payload[n:])
			d.block = d.block[:d.fragmentStart+n]
		}
	}
	// END_HEADERS is the same bit in HEADERS, PUSH_PROMISE and CONTINUATION.
	if !d.flags.Has(http2.FlagHeadersEndHeaders) {
		d.continuing = true
		return
	}
	d.continuing = false
	s.headerBlock(d)
	// The encoded block holds credentials: they are not to stay in a
	// buffer kept for the next block.
	d.block = passive.Emptied(d.block)
}

// headerBlock decodes the complete header block d collected and acts on it.
func (s *Scanner) headerBlock(d *direction) {
	id := d.blockStream
	st, open := s.streams[id]
	opening := false
	s.capture = captureNothing
	switch {
	case d.blockType == http2.FramePushPromise:
		// Decoded only to keep the table in step: pushed streams are not
		// requests this client made.
	case d.client:
		if !open && id%2 == 1 && id > s.lastClientStream {
			opening = true
			s.lastClientStream = id
			s.capture = captureRequest
		}
	case open && !st.responded:
		s.capture = captureResponse
	}
	s.seen = 0
	s.request = passive.Request{}
	s.authority = ""
	s.status = ""
	s.resp = passive.Response{}

	// Blocks nothing is kept from are still decoded, for the table; with
	// emitting off the decoder skips decoding strings it does not index.
	d.decoder.SetEmitEnabled(s.capture != captureNothing)
	_, err := d.decoder.Write(d.block)
	if err == nil {
		err = d.decoder.Close()
	}
	if err != nil {
		s.fail(fmt.Errorf("h2: %s header block on stream %d: %w", d.name(), id, err))
		return
	}

	switch {
	case opening:
		if s.begin == nil {
			return
		}
		s.connectTarget()
		ex := s.begin(s.request)
		switch {
		case ex == nil:
		case id > s.serverLastStream:
			// Sent before the client read the server's GOAWAY: the
			// server ignores it, and the client sends it again elsewhere.
			ex.Refused()
		default:
			s.streams[id] = stream{exchange: ex}
		}
	case !open || d.blockType == http2.FramePushPromise || d.client || st.responded:
		// No exchange, a promise of a pushed stream, or trailers: only an
		// END_STREAM is acted on.
	default:
		status, ok := parseStatus(s.status)
		if !ok {
			// A malformed response: the client resets the stream.
			s.forget(id)
			st.exchange.End(false)
			return
		}
		// Below 200 it is informational; the final response is still to
		// come, and an END_STREAM now ends the exchange incomplete.
		if status >= 200 {
			st.responded = true
			s.streams[id] = st
			s.resp.Status = status
			st.exchange.Response(s.resp)
		}
	}
	if d.blockEndStream {
		s.endStream(d, id)
	}
}

// field is the decoders' emit function: it keeps the first value of the
// fields a report carries and lets every other field go.
func (s *Scanner) field(f hpack.HeaderField) {
	switch s.capture {
	case captureRequest:
		switch f.Name {
		case ":method":
			s.keep(seenMethod, &s.request.Method, f.Value)
		case ":path":
			if s.first(seenPath) {
				s.request.Path, s.request.RawQuery, _ = strings.Cut(f.Value, "?")
			}
		case ":protocol":
			s.seen |= seenProtocol
		case ":authority":
			s.keep(seenAuthority, &s.authority, f.Value)
		case "user-agent":
			s.keep(seenUserAgent, &s.request.UserAgent, f.Value)
		case "content-type":
			s.keep(seenContentType, &s.request.ContentType, f.Value)
		}
	case captureResponse:
		switch f.Name {
		case ":status":
			s.keep(seenStatus, &s.status, f.Value)
		case "content-type":
			s.keep(seenContentType, &s.resp.ContentType, f.Value)
		case "content-encoding":
			s.keep(seenContentEncoding, &s.resp.ContentEncoding, f.Value)
		}
	}
}

// connectTarget completes the request of a CONNECT once its whole block is
// read, as pseudo-header fields come in any order. With :protocol it is an
// extended CONNECT (RFC 8441): a WebSocket or other protocol tunnelled over
// the stream, at its :path. Without, it is a tunnel to the host and port of
// its :authority (RFC 9113 8.5), which Path carries as HTTP/1.1's CONNECT
// target does. A :protocol on another method asks for nothing: a server
// answers that request as it is.
func (s *Scanner) connectTarget() {
	if s.request.Method != "CONNECT" {
		return
	}
	if s.seen&seenProtocol != 0 {
		s.request.Upgrade = true
		return
	}
	s.request.Path, s.request.RawQuery = s.authority, ""
}

// keep sets *dst to v when v is the first value of the field bit stands for.
func (s *Scanner) keep(bit uint8, dst *string, v string) {
	if s.first(bit) {
		*dst = v
	}
}

// first marks the field bit stands for as seen and says whether it was not
// yet.
func (s *Scanner) first(bit uint8) bool {
	if s.seen&bit != 0 {
		return false
	}
	s.seen |= bit
	return true
}

// parseStatus reads a :status value, three digits (RFC 9110 15).
// Atoi also takes a sign, but a signed three-character value is below 100.
func parseStatus(v string) (int, bool) {
	if len(v) != 3 {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		return 0, false
	}
	return n, true
}

// settingsAnnounced applies the SETTINGS frame d finished reading.
func (s *Scanner) settingsAnnounced(d *direction) {
	d.unackedSettings++
	if !d.settingHasTable {
		return
	}
	d.tableSize = d.settingTableSize
	if d.tableSize > d.tableSizeBound {
		d.tableSizeBound = d.tableSize
		s.peer(d).decoder.SetAllowedMaxDynamicTableSize(d.tableSizeBound)
	}
}

// settingsAcknowledged handles the other side's acknowledgement of d's
// oldest unacknowledged SETTINGS: once all are acknowledged, the latest
// announced table size is the bound.
func (s *Scanner) settingsAcknowledged(d *direction) {
	if d.unackedSettings > 0 {
		d.unackedSettings--
	}
	if d.unackedSettings == 0 && d.tableSizeBound != d.tableSize {
		d.tableSizeBound = d.tableSize
		s.peer(d).decoder.SetAllowedMaxDynamicTableSize(d.tableSizeBound)
	}
}

// fail stops reading for good: the exchanges still open cannot be told
// apart from the rest of the bytes any more.
func (s *Scanner) fail(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	clear(s.client.block)
	clear(s.server.block)
	s.client.block, s.server.block = nil, nil
	s.endAll()
}

func (s *Scanner) endAll() {
	s.client.bodyOf, s.server.bodyOf = nil, nil
	for _, id := range s.openStreamsAbove(0) {
		st := s.streams[id]
		delete(s.streams, id)
		st.exchange.End(false)
	}
}

// openStreamsAbove returns the streams with an exchange whose IDs are above
// id, in stream order, so that exchanges ended together end in the same
// order on every run.
func (s *Scanner) openStreamsAbove(id uint32) []uint32 {
	ids := slices.Sorted(maps.Keys(s.streams))
	return slices.DeleteFunc(ids, func(open uint32) bool { return open <= id })
}
