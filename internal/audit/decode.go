package audit

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The decoder reads the few fields of an audit event that coverage needs
// straight from the line's bytes, without building the event: it walks the
// JSON once, validating every byte of it (strings, escapes, numbers,
// literals, nesting) as encoding/json's scanner does, and keeps the wanted
// values as strings that share the line's memory.
//
// It handles the lines the API server writes. Whenever a line is anything
// else - not valid JSON, a wanted field twice, a key with an escape or a
// non-ASCII byte (which encoding/json might fold onto a wanted field), a
// wanted field of the wrong type, a status code that is not a plain
// integer, nesting deeper than maxDepth - it gives up and encoding/json
// decodes the line, so that every line gets exactly encoding/json's
// verdict and values. TestDecoderAgreesWithEncodingJSON and FuzzDecoder
// hold it to that.

// maxDepth is the deepest nesting the fast path follows (its stack is
// the bits of a uint64); deeper lines go to encoding/json (which allows
// 10000).
const maxDepth = 64

// decoder decodes lines into Events. Its zero value is ready; it holds the
// objectRef and responseStatus of the last event, so one decoder serves
// one goroutine.
type decoder struct {
	ref    ObjectRef
	status ResponseStatus
	// slow counts the lines encoding/json decoded.
	slow int64
}

// decode fills ev from one trimmed line. The strings of ev share line's
// memory (see Event.clone), and its pointers point into d.
func (d *decoder) decode(line []byte, ev *Event) error {
	*ev = Event{}
	if !d.fast(line, ev) {
		d.slow++
		*ev = Event{}
		if err := json.Unmarshal(line, ev); err != nil {
			return malformedf("%w", err)
		}
	}
	return ev.check()
}

// scanner walks one line.
type scanner struct {
	b []byte
	i int
}

// peek returns the next byte, or 0 at the end of the line.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// skipWS returns the index of the first byte at or after i that is not
// JSON whitespace, but for '\n': lines hold none, and the fast path takes
// a line straight from a chunk, ending at its first newline (a line that
// is not whole is left to encoding/json). The API server writes no
// whitespace.
func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialOrHigh returns the index of the first '"', '\\', control byte or
// byte beyond ASCII of b at or after i, or len(b), so that a string it finds
// the end of needs no UTF-8 check: eight bytes at a time, the lowest
// flagged byte of a word being exact (borrows only flag bytes above a real
// match). x = w^0x02 turns '"' into 0x20 and keeps control bytes below it
// (space and '!' go above), so that one test, x < 0x21, finds both: a tenth
// less time per line than testing each.
func specialOrHigh(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		x, e := w^(lsb*0x02), w^(lsb*'\\')
		if m := (x-lsb*0x21)&^x | (e-lsb)&^e | w; m&msb != 0 {
			return i + bits.TrailingZeros64(m&msb)/8
		}
	}
	for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 && b[i] < 0x80 {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// literal consumes lit (true, false, null).
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number consumes a JSON number and returns its text.
func (s *scanner) number() ([]byte, bool) {
	b, start := s.b, s.i
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(b, i+1); b[i-1] == '.' {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		if i = digits(b, i); i == d {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// digits returns the index of the first byte at or after i that is not a
// decimal digit.
func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skip validates and passes over one value.
func (s *scanner) skip(depth int) bool { return s.walk(depth, nil, nil, nil) }

// walk validates and passes over one value. It is one loop over the
// bytes, with no call per member or element, since skipped members are
// most of a line; a stack of bits says, per level, object (1) or array
// (0).
//
// With ns set, the value must be an object, and its members named in ns
// are not skipped: the first len(strs) of them are strings (or null,
// which leaves them as they are, as encoding/json does), read into
// strs[f] by the walk itself (no call per string); the others are handed
// to value (with their index in ns; value may be nil when there are none),
// which reads them from s.i on. A wanted member twice, or a member name
// encoding/json might decode or fold differently (escapes, non-ASCII),
// fails the walk. Member names are first compared with the ones the API
// server writes next (ns.known), which spares scanning and looking up
// most of them.
func (s *scanner) walk(depth int, ns *names, strs []*string, value func(f int) bool) bool {
	b := s.b
	i := s.i
	base := unsafe.Pointer(unsafe.SliceData(b))
	// The walk's state but for b and i lives in memory (a struct too big
	// for registers): it changes once per token at most, and kept in
	// registers it made the compiler spill and reload them, i included,
	// in the loop of each string (a twentieth of the walk's time).
	var v struct {
		stack    uint64
		level    int
		inKey    bool
		keyStart int
		escaped  bool // the key or wanted string holds an escape
		seen     uint32
		f        int // the member of ns at hand
		// next is where ns.known is expected to go on: members come in
		// the API server's order.
		next int
		// dst is the wanted string being read, from strStart on; plain
		// says no byte beyond ASCII was met in it.
		dst      *string
		strStart int
		plain    bool
	}
	if ns != nil && (i >= len(b) || b[i] != '{') {
		return false
	}
value:
	if i >= len(b) {
		return false
	}
	if b[i] == '"' { // most values are strings: spare them the switch's search
		i++
		goto str
	}
	switch c := b[i]; c {
	case '{', '[':
		if depth+v.level >= maxDepth {
			return false
		}
		v.stack = v.stack<<1 | uint64(c>>5&1) // 1 for '{' (0x7b), 0 for '[' (0x5b)
		v.level++
		i++
		i = skipWS(b, i)
		if i < len(b) && b[i] == c+2 { // '}' or ']'
			i++
			v.stack >>= 1
			v.level--
			goto next
		}
		if c == '{' {
			goto key
		}
		goto value
	case 't':
		if len(b)-i < 4 || string(b[i:i+4]) != "true" {
			return false
		}
		i += 4
	case 'f':
		if len(b)-i < 5 || string(b[i:i+5]) != "false" {
			return false
		}
		i += 5
	case 'n':
		if len(b)-i < 4 || string(b[i:i+4]) != "null" {
			return false
		}
		i += 4
	default:
		s.i = i
		if _, ok := s.number(); !ok {
			return false
		}
		i = s.i
	}
	goto next

key:
	if v.level == 1 && ns != nil {
		// The member the API server writes next, or one after it (it
		// leaves empty ones out), compared whole, `"name":` a word at a
		// time: no scan, no lookup.
		for k := v.next; k < len(ns.known); k++ {
			if p := &ns.known[k]; p.match(b, i) {
				v.next = k + 1
				i = skipWS(b, i+p.n)
				if v.f = p.f; v.f < 0 {
					goto value
				}
				goto member
			}
		}
	}
	if i >= len(b) || b[i] != '"' {
		return false
	}
	i++
	v.inKey, v.keyStart, v.escaped = true, i, false

str:
	for {
		// specialOrHigh, by hand: strings are most of the bytes and most
		// of the tokens of a line, and a call costs about as much as a
		// short string's word. Without specialOrHigh's masks (&^x, &^e), the
		// borrows of x-0x21 and e-1 flag every byte beyond ASCII too
		// (e-1 all but 0xdc, which x-0x21 flags), and still the lowest
		// flagged byte is a real one: four operations less per word (a
		// fifteenth of the decoder's time), and the switch below passes
		// over such bytes, rare in audit logs.
		for {
			if i > len(b)-8 {
				i = specialOrHigh(b, i)
				break
			}
			w := load64(base, i)
			x, e := w^(lsb*0x02), w^(lsb*'\\')
			if m := ((x - lsb*0x21) | (e - lsb)) & msb; m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			i++
			if v.dst != nil {
				if !v.plain && !s.unquote(b[v.strStart-1:i], v.escaped, v.dst) {
					return false
				}
				if v.plain {
					*v.dst = view(b[v.strStart : i-1])
				}
				v.dst = nil
				goto next
			}
			if !v.inKey {
				goto next
			}
			v.inKey = false
			v.f = -1
			if v.level == 1 && ns != nil {
				// A key with escapes or bytes beyond ASCII may be a wanted
				// one to encoding/json (Unicode case folding): let it say.
				key := b[v.keyStart : i-1]
				if v.f = ns.lookup(key); v.f < 0 && (v.escaped || !ascii(key)) {
					return false
				}
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return false
			}
			i++
			i = skipWS(b, i)
			if v.f >= 0 {
				goto member
			}
			goto value
		case c == '\\':
			if i+1 >= len(b) {
				return false
			}
			v.escaped, v.plain = true, false
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		case c >= 0x80: // beyond ASCII (any string stops here): a wanted one is no longer plain
			v.plain = false
			i++
		default: // a control byte
			return false
		}
	}

member:
	// A wanted member of ns, its value at i.
	if v.seen&(1<<v.f) != 0 {
		return false
	}
	v.seen |= 1 << v.f
	if v.f < len(strs) {
		if i < len(b) && b[i] == '"' {
			i++
			v.dst, v.strStart, v.plain, v.escaped = strs[v.f], i, true, false
			goto str
		}
		if len(b)-i < 4 || string(b[i:i+4]) != "null" {
			return false
		}
		i += 4
		goto next
	}
	s.i = i
	if !value(v.f) {
		return false
	}
	i = s.i

next:
	// After a value: the end of the walked value, or of its container, or
	// the next member or element.
	if v.level == 0 {
		s.i = i
		return true
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return false
	}
	switch b[i] {
	case ',':
		i++
		i = skipWS(b, i)
		if v.stack&1 == 1 {
			goto key
		}
		goto value
	case '}':
		if v.stack&1 != 1 {
			return false
		}
	case ']':
		if v.stack&1 != 0 {
			return false
		}
	default:
		return false
	}
	i++
	v.stack >>= 1
	v.level--
	goto next
}

// unquote sets dst to the string q (quotes included, validated by the
// walk) holds, which has escapes or bytes beyond ASCII: its bytes when it
// has no escape and is valid UTF-8, else encoding/json's unquoting,
// exactly.
func (s *scanner) unquote(q []byte, escaped bool, dst *string) bool {
	raw := q[1 : len(q)-1]
	if !escaped && utf8.Valid(raw) {
		*dst = view(raw)
		return true
	}
	return json.Unmarshal(q, dst) == nil
}

// ascii says whether b is all ASCII.
func ascii(b []byte) bool {
	var acc uint64
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc&msb == 0
}

// view is the string sharing b's memory.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// intValue reads a wanted int field: an integer that strconv.ParseInt
// takes (as encoding/json requires), or null.
func (s *scanner) intValue(dst *int) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	num, ok := s.number()
	if !ok {
		return false
	}
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	if len(num) > 18 { // may overflow: let encoding/json say
		return false
	}
	n := 0
	for _, c := range num {
		if c < '0' || c > '9' { // a fraction or an exponent
			return false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	*dst = n
	return true
}

// foldEq says whether key equals name (lower case ASCII) under ASCII case
// folding, encoding/json's match for ASCII keys. The caller has compared
// the lengths.
func foldEq(key []byte, name string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// names are the wanted members of an object, indexed by length and first
// letter (no two share both; names are shorter than 32 bytes), and the
// members the API server writes, in its order.
type names struct {
	exact, lower []string
	at           [32][26]int8 // -1: none
	known        []keyPat
}

// keyPat is a member name as the API server writes it, `"name":`, and its
// index among the wanted names (-1: not wanted). Bytes equal to it are a
// key that needs no scan and no lookup: plain ASCII, no escape, ended by
// its quote and followed by the colon.
type keyPat struct {
	n    int       // len(`"name":`)
	span int       // the bytes match reads: max(n, 8)
	nw   int       // words compared
	off  [4]int    // where they start: 0, 8, ..., n-8 (overlapping the one before)
	w    [4]uint64 // what they hold
	mask uint64    // of the first word, for n < 8
	f    int
}

func newKeyPat(name string, f int) keyPat {
	pat := `"` + name + `":`
	if len(pat) > 32 {
		panic("audit: member name too long: " + name)
	}
	p := keyPat{n: len(pat), span: max(len(pat), 8), mask: ^uint64(0), f: f}
	padded := make([]byte, p.span)
	copy(padded, pat)
	if p.n < 8 {
		p.mask = 1<<(8*p.n) - 1
	}
	for off := 0; off < p.span; off += 8 {
		o := min(off, p.span-8)
		p.off[p.nw], p.w[p.nw] = o, binary.LittleEndian.Uint64(padded[o:])&p.mask
		p.nw++
	}
	return p
}

// match says whether b holds p at i.
func (p *keyPat) match(b []byte, i int) bool {
	if len(b)-i < p.span {
		return false
	}
	base := unsafe.Pointer(unsafe.SliceData(b))
	if load64(base, i)&p.mask != p.w[0] {
		return false
	}
	for k := 1; k < p.nw; k++ {
		if load64(base, i+p.off[k]) != p.w[k] {
			return false
		}
	}
	return true
}

// inOrder sets the members the API server writes, wanted or not, in its
// order; lookup says which wanted member each is to encoding/json.
func (ns *names) inOrder(order ...string) *names {
	for _, name := range order {
		ns.known = append(ns.known, newKeyPat(name, ns.lookup([]byte(name))))
	}
	return ns
}

func newNames(exact ...string) *names {
	ns := &names{exact: exact}
	for l := range ns.at {
		for c := range ns.at[l] {
			ns.at[l][c] = -1
		}
	}
	for i, e := range exact {
		lower := strings.ToLower(e)
		ns.lower = append(ns.lower, lower)
		at := &ns.at[len(e)][lower[0]-'a']
		if *at >= 0 {
			panic("audit: wanted members " + e + " and " + exact[*at] + " share length and first letter")
		}
		*at = int8(i)
	}
	return ns
}

// lookup returns the index of the member key, or -1. It tries the exact
// name first, then encoding/json's case-insensitive match (a key that
// folds to a name starts with its letter in either case).
func (ns *names) lookup(key []byte) int {
	if len(key) == 0 || len(key) >= len(ns.at) {
		return -1
	}
	c := key[0] | 0x20
	if c < 'a' || c > 'z' {
		return -1
	}
	i := ns.at[len(key)][c-'a']
	if i < 0 || string(key) != ns.exact[i] && !foldEq(key, ns.lower[i]) {
		return -1
	}
	return int(i)
}

// Wanted members of an event, in eventNames' order: the strings first.
const (
	fieldKind = iota
	fieldAuditID
	fieldStage
	fieldVerb
	fieldRequestURI
	fieldUserAgent
	fieldUser
	fieldObjectRef
	fieldResponseStatus
	fieldRequestObject
)

var (
	// The members in the order of the API server's types (audit.k8s.io/v1
	// Event, UserInfo, ObjectReference; metav1.Status).
	eventNames = newNames("kind", "auditID", "stage", "verb", "requestURI", "userAgent", "user", "objectRef", "responseStatus", "requestObject").
			inOrder("kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser", "sourceIPs",
			"userAgent", "objectRef", "responseStatus", "requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp", "annotations")
	userNames      = newNames("username").inOrder("username", "uid", "groups", "extra")
	objectRefNames = newNames("resource", "namespace", "name", "apiGroup", "apiVersion", "subresource").
			inOrder("resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource")
	statusNames = newNames("code").inOrder("kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code")
)

// fast is the fast path for one line; false means encoding/json must
// decide.
func (d *decoder) fast(line []byte, ev *Event) bool {
	n, ok := d.prefix(line, ev)
	return ok && n == len(line)
}

// line decodes the line data starts with, on the fast path only: ok says
// that it took the whole line, n bytes with its newline (if any).
func (d *decoder) line(data []byte, ev *Event) (n int, ok bool) {
	*ev = Event{}
	n, ok = d.prefix(data, ev)
	if ok && n < len(data) {
		if data[n] != '\n' {
			return 0, false
		}
		n++
	}
	return n, ok
}

// prefix decodes one event from the start of data and returns the
// length of it and of the whitespace after it.
func (d *decoder) prefix(data []byte, ev *Event) (int, bool) {
	s := scanner{b: data}
	s.i = skipWS(s.b, s.i)
	strs := [...]*string{fieldKind: &ev.Kind, fieldAuditID: &ev.AuditID, fieldStage: &ev.Stage, fieldVerb: &ev.Verb,
		fieldRequestURI: &ev.RequestURI, fieldUserAgent: &ev.UserAgent}
	ok := s.walk(0, eventNames, strs[:], func(f int) bool {
		switch f {
		case fieldUser:
			if s.peek() == 'n' {
				return s.literal("null")
			}
			return s.walk(1, userNames, []*string{&ev.User.Username}, nil)
		case fieldObjectRef:
			if s.peek() == 'n' {
				ev.ObjectRef = nil
				return s.literal("null")
			}
			d.ref = ObjectRef{}
			ev.ObjectRef = &d.ref
			refs := [...]*string{&d.ref.Resource, &d.ref.Namespace, &d.ref.Name, &d.ref.APIGroup, &d.ref.APIVersion, &d.ref.Subresource}
			return s.walk(1, objectRefNames, refs[:], nil)
		case fieldResponseStatus:
			if s.peek() == 'n' {
				ev.ResponseStatus = nil
				return s.literal("null")
			}
			d.status = ResponseStatus{}
			ev.ResponseStatus = &d.status
			return s.walk(1, statusNames, nil, func(int) bool { return s.intValue(&d.status.Code) })
		case fieldRequestObject:
			// Kept as it is written, as json.RawMessage keeps it (null
			// included), once the walk has validated it.
			start := s.i
			if !s.skip(1) {
				return false
			}
			ev.RequestObject = s.b[start:s.i:s.i]
			return true
		}
		return false
	})
	if !ok {
		return 0, false
	}
	return skipWS(s.b, s.i), true
}
