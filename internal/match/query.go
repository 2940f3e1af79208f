package match

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// maxQueryParams is net/url's default limit (GODEBUG urlmaxqueryparams):
// URL.Query() returns no values at all for a query with more parameters.
const maxQueryParams = 10000

// listVerbAndName decides between list and watch for a GET on a collection,
// and finds the single object a fieldSelector=metadata.name=<name> names,
// as the factory does by decoding the query into ListOptions.
//
// The factory's outcome depends on whether that decoding fails (a bad
// labelSelector, fieldSelector, limit or timeoutSeconds): on failure the
// name is dropped and watch is read with strings.ToLower instead of
// strings.EqualFold. Both only matter when the fieldSelector mentions
// metadata.name, or when the watch value equals "false" only under Unicode
// folding ("falſe"). Everything else is decided here without allocating;
// those rare cases run the factory's own decoding.
func listVerbAndName(rawQuery string) (verb, name string) {
	if rawQuery == "" {
		return "list", ""
	}
	if strings.Count(rawQuery, "&")+1 > maxQueryParams {
		return "list", ""
	}
	watch := "list"
	if value, found := firstQueryValue(rawQuery, "watch"); found {
		var buf [16]byte
		decoded, fits := unescapeInto(buf[:], value)
		switch {
		case !fits:
			watch = "watch" // too long to be "0" or "false"
		case string(decoded) == "0" || asciiEqualFold(decoded, "false"):
			// false either way
		case bytes.EqualFold(decoded, []byte("false")):
			return decodeListOptions(rawQuery)
		default:
			watch = "watch"
		}
	}
	if value, found := firstQueryValue(rawQuery, "fieldSelector"); found {
		var buf [256]byte
		decoded, fits := unescapeInto(buf[:], value)
		if !fits || bytes.Contains(decoded, []byte("metadata.name")) {
			return decodeListOptions(rawQuery)
		}
	}
	return watch, ""
}

// decodeListOptions is the factory's outcome for the rare cases where the
// result depends on every detail of ListOptions decoding. It allocates.
func decodeListOptions(rawQuery string) (verb, name string) {
	query, _ := url.ParseQuery(rawQuery) // what URL.Query() does
	watch, selector, ok := listOptions(query)
	if !ok {
		selector = nil
		watch = false
		if values := query["watch"]; len(values) > 0 {
			switch strings.ToLower(values[0]) {
			case "false", "0":
			default:
				watch = true
			}
		}
	}
	verb = "list"
	if watch {
		verb = "watch"
	}
	if selector != nil {
		if n, ok := selector.RequiresExactMatch("metadata.name"); ok {
			if len(content.IsPathSegmentName(n)) == 0 {
				name = n
			}
		}
	}
	return verb, name
}

// listOptions is what the factory's
// metainternalversionscheme.ParameterCodec.DecodeParameters(query,
// metav1.SchemeGroupVersion, &ListOptions{}) decides that matters here:
// the watch flag, the field selector, and whether decoding failed. The
// decoding is the generated url.Values to v1.ListOptions conversion (first
// value of each parameter; booleans false only for "0" or "false" under
// Unicode folding; limit and timeoutSeconds parsed as base-10 int64, the
// only conversions that fail) followed by v1 to internal, which parses the
// label and field selectors. It is spelled out rather than called because
// the scheme behind the codec links most of apimachinery's meta types into
// the sidecar (about 4 MiB of its resident memory); the differential tests
// and FuzzMatchAgainstRequestInfoFactory hold it to the codec.
func listOptions(query url.Values) (watch bool, selector fields.Selector, ok bool) {
	if len(query) == 0 {
		return false, nil, true // the codec returns before converting anything
	}
	first := func(key string) (string, bool) {
		if values := query[key]; len(values) > 0 {
			return values[0], true
		}
		return "", false
	}
	for _, key := range []string{"timeoutSeconds", "limit"} {
		if value, found := first(key); found {
			if _, err := strconv.ParseInt(value, 10, 64); err != nil {
				return false, nil, false
			}
		}
	}
	labelSelector, _ := first("labelSelector")
	if _, err := labels.Parse(labelSelector); err != nil {
		return false, nil, false
	}
	fieldSelector, _ := first("fieldSelector")
	selector, err := fields.ParseSelector(fieldSelector)
	if err != nil {
		return false, nil, false
	}
	if value, found := first("watch"); found {
		watch = value != "0" && !strings.EqualFold(value, "false")
	}
	return watch, selector, true
}

// firstQueryValue returns the raw (still escaped) value of the first
// parameter named key that url.ParseQuery keeps: it drops pairs containing
// ';' and pairs whose key or value has a malformed %-escape.
func firstQueryValue(rawQuery, key string) (value string, found bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		if !queryComponentEquals(rawKey, key) || !validEscapes(rawValue) {
			continue
		}
		return rawValue, true
	}
	return "", false
}

// queryComponentEquals reports whether the query component s unescapes
// (as url.QueryUnescape) to want, without allocating.
func queryComponentEquals(s, want string) bool {
	j := 0
	for i := 0; i < len(s); j++ {
		if j >= len(want) {
			return false
		}
		c := s[i]
		switch c {
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 3
		case '+':
			c = ' '
			i++
		default:
			i++
		}
		if c != want[j] {
			return false
		}
	}
	return j == len(want)
}

// validEscapes reports whether url.QueryUnescape accepts s.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// unescapeInto unescapes the query component s (escapes already validated)
// into buf; fits is false when the result does not fit.
func unescapeInto(buf []byte, s string) (decoded []byte, fits bool) {
	n := 0
	for i := 0; i < len(s); n++ {
		if n == len(buf) {
			return buf[:n], false
		}
		switch s[i] {
		case '%':
			buf[n] = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 3
		case '+':
			buf[n] = ' '
			i++
		default:
			buf[n] = s[i]
			i++
		}
	}
	return buf[:n], true
}

// asciiEqualFold is strings.EqualFold restricted to ASCII folding, which is
// what strings.ToLower(b) == lower amounts to for an ASCII lower.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
