package intake

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

// Bounds of what a batch carries besides its delta's own bounds.
const (
	maxSource  = 128 // a pod UID has 36
	maxRelease = 64
	// maxOperationID is far above the longest operationId even of a custom
	// resource (a 253-byte group is the bulk of it).
	maxOperationID = 1024
	// MaxFieldPath bounds a field path of a delta's Fields. The longest
	// path of a built-in schema has under 200 bytes; longer ones are
	// unknown fields a client made up, which a recorder leaves out (counted
	// in FieldCounts.Overflow) rather than send a batch refused for them.
	MaxFieldPath = 1024
)

// ValidFieldPath says whether a field path may be in a delta's Fields: 1 to
// MaxFieldPath bytes of UTF-8. A recorder drops the paths that are not, so
// that no body a client sends makes its batches refused.
func ValidFieldPath(path string) bool {
	return path != "" && len(path) <= MaxFieldPath && utf8.ValidString(path)
}

// DropInvalidFieldPaths removes from r, in place, the paths ValidFieldPath
// refuses, and says how many it removed (a recorder counts them as
// overflow).
func DropInvalidFieldPaths(r *fields.Result) (dropped int64) {
	for _, paths := range []*[]string{&r.Set, &r.Unknown, &r.IllTyped} {
		kept := (*paths)[:0]
		for _, path := range *paths {
			if ValidFieldPath(path) {
				kept = append(kept, path)
			} else {
				dropped++
			}
		}
		*paths = kept
	}
	return dropped
}

// check says whether the collector would accept b.
func (b Batch) check() error {
	if err := b.checkHeaders(); err != nil {
		return err
	}
	if b.Delta == nil {
		return refuse(http.StatusBadRequest, ReasonBody, "check batch %d: no delta", b.Seq)
	}
	return checkDelta(b.Delta)
}

func (b Batch) checkHeaders() error {
	if b.Source == "" || len(b.Source) > maxSource || !allIn(b.Source, "-") {
		return refuse(http.StatusBadRequest, ReasonHeader, "check batch: %s %.32q is not 1 to %d of [A-Za-z0-9-]", HeaderSource, b.Source, maxSource)
	}
	if b.Seq == 0 {
		return refuse(http.StatusBadRequest, ReasonHeader, "check batch: %s is 0, want 1 or more", HeaderSeq)
	}
	if b.Release == "" || len(b.Release) > maxRelease || !allIn(b.Release, ".+_- ") {
		return refuse(http.StatusBadRequest, ReasonHeader, "check batch: %s %.32q is not 1 to %d of [A-Za-z0-9.+_- ]", HeaderRelease, b.Release, maxRelease)
	}
	return nil
}

// allIn says whether every byte of s is an ASCII letter, a digit or one of
// extra.
func allIn(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkDelta says whether a delta could have been recorded: no count is
// negative, the totals add up (every request is counted on one operation
// or as unknown), the bounds of coverage.Delta hold, operation IDs are
// bounded and no entry is null; so do its field counts (checkFields).
// Merging a delta that passes cannot panic.
func checkDelta(d *coverage.Delta) error {
	bad := func(format string, args ...any) error {
		return refuse(http.StatusBadRequest, ReasonDelta, "check delta: "+format, args...)
	}
	if d.Requests < 0 || d.FailedRequests < 0 || d.UnknownRequests < 0 || d.Overflow < 0 {
		return bad("negative total")
	}
	if d.FailedRequests > d.Requests || d.UnknownRequests > d.Requests {
		return bad("%d failed and %d unknown of %d requests", d.FailedRequests, d.UnknownRequests, d.Requests)
	}
	if len(d.Unknown) > coverage.MaxUnknownPaths {
		return bad("%d unknown shapes, at most %d", len(d.Unknown), coverage.MaxUnknownPaths)
	}
	if len(d.Clients) > coverage.MaxClients {
		return bad("%d clients, at most %d", len(d.Clients), coverage.MaxClients)
	}

	known := sum{}
	for id, c := range d.Operations {
		if !validOperationID(id) {
			return bad("operation ID %.32q", id)
		}
		if !validCounts(c) {
			return bad("counts of operation %.32q", id)
		}
		known.add(c.Requests)
	}
	if known.overflow || known.n != d.Requests-d.UnknownRequests {
		return bad("%d requests on operations and %d unknown, of %d requests", known.n, d.UnknownRequests, d.Requests)
	}

	shapes := sum{}
	for shape, c := range d.Unknown {
		if !validCounts(c) {
			return bad("counts of unknown shape %.32q", shape)
		}
		shapes.add(c.Requests)
	}
	if shapes.overflow || shapes.n > d.UnknownRequests {
		return bad("%d requests of unknown shapes, of %d unknown", shapes.n, d.UnknownRequests)
	}

	for client, c := range d.Clients {
		if c == nil || c.Requests < 0 || c.Failed < 0 || c.Unknown < 0 || !validOperationCounts(c.Operations) {
			return bad("counts of client %.64q", client.Namespace+"/"+client.Pod+" "+client.UserAgent)
		}
	}
	for test, ops := range d.Tests {
		if !validOperationCounts(ops) {
			return bad("operations of test %.32q", test)
		}
	}
	if err := checkWrites(d, bad); err != nil {
		return err
	}
	return checkFields(d, bad)
}

// checkWrites says whether a delta's writes could have been recorded: each
// is one of the delta's requests (so writes and writes dropped are at most
// its requests), the bounds of coverage.AddWrite hold, the verb is a write
// verb, the ID and resource are there, a status is an HTTP status, bodies
// are JSON, and no Secret has one.
func checkWrites(d *coverage.Delta, bad func(format string, args ...any) error) error {
	if d.WritesDropped < 0 || int64(len(d.Writes)) > d.Requests-d.WritesDropped {
		return bad("%d writes and %d dropped, of %d requests", len(d.Writes), d.WritesDropped, d.Requests)
	}
	if len(d.Writes) > coverage.MaxWrites {
		return bad("%d writes, at most %d", len(d.Writes), coverage.MaxWrites)
	}
	bytes := 0
	for i := range d.Writes {
		w := &d.Writes[i]
		switch {
		case w.ID == "" || len(w.ID) > coverage.MaxWriteIDBytes:
			return bad("write %d: ID is not 1 to %d bytes", i, coverage.MaxWriteIDBytes)
		case !slices.Contains(coverage.WriteVerbs, w.Verb):
			return bad("write %.32q: verb %.16q is not one of %s", w.ID, w.Verb, strings.Join(coverage.WriteVerbs, ", "))
		case w.Resource == "":
			return bad("write %.32q: no resource", w.ID)
		case w.Status < 100 || w.Status > 599:
			return bad("write %.32q: status %d", w.ID, w.Status)
		case w.IsSecret() && (w.Request != nil || w.Response != nil):
			return bad("write %.32q: a Secret's body", w.ID)
		case w.Request != nil && !json.Valid(w.Request), w.Response != nil && !json.Valid(w.Response):
			return bad("write %.32q: a body that is not JSON", w.ID)
		}
		bytes += len(w.Request) + len(w.Response)
	}
	if bytes > coverage.MaxWriteBytes {
		return bad("%d bytes of write bodies, at most %d", bytes, coverage.MaxWriteBytes)
	}
	return nil
}

// checkFields says whether a delta's field counts could have been recorded.
// A body is walked for the request it came with, so every operation in
// Fields has at least as many requests as bodies; no count is negative, at
// most Bodies are Malformed, and a path is counted at most once per body
// that was read (Bodies - Malformed). The bounds of coverage.AddFields hold
// per operation and over the delta, and every path is ValidFieldPath.
func checkFields(d *coverage.Delta, bad func(format string, args ...any) error) error {
	entries := 0
	for id, fc := range d.Fields {
		if !validOperationID(id) {
			return bad("operation ID %.32q of field counts", id)
		}
		if fc == nil {
			return bad("null field counts of operation %.32q", id)
		}
		if fc.Bodies < 0 || fc.Malformed < 0 || fc.Overflow < 0 || fc.Malformed > fc.Bodies {
			return bad("field counts of operation %.32q: %d bodies, %d malformed, %d overflow", id, fc.Bodies, fc.Malformed, fc.Overflow)
		}
		ops := d.Operations[id]
		if ops == nil || fc.Bodies > ops.Requests {
			requests := int64(0)
			if ops != nil {
				requests = ops.Requests
			}
			return bad("%d bodies of operation %.32q, of %d requests", fc.Bodies, id, requests)
		}
		read := fc.Bodies - fc.Malformed
		for _, set := range []struct {
			name  string
			paths map[string]int64
			max   int
		}{
			{"set", fc.Set, coverage.MaxSetFields},
			{"unknown", fc.Unknown, coverage.MaxUnknownFields},
			{"ill-typed", fc.IllTyped, coverage.MaxUnknownFields},
		} {
			if len(set.paths) > set.max {
				return bad("%d %s field paths of operation %.32q, at most %d", len(set.paths), set.name, id, set.max)
			}
			for path, n := range set.paths {
				if !ValidFieldPath(path) {
					return bad("%s field path %.32q of operation %.32q: not 1 to %d bytes of UTF-8", set.name, path, id, MaxFieldPath)
				}
				if n < 0 || n > read {
					return bad("%s field path %.32q of operation %.32q in %d bodies, of %d read", set.name, path, id, n, read)
				}
			}
			entries += len(set.paths)
		}
	}
	if entries > coverage.MaxFieldEntries {
		return bad("%d field paths, at most %d", entries, coverage.MaxFieldEntries)
	}
	return nil
}

func validOperationID(id string) bool { return id != "" && len(id) <= maxOperationID }

func validCounts(c *coverage.Counts) bool {
	return c != nil && c.Requests >= 0 && nonNegative(c.ByVerb) && nonNegative(c.ByStatus)
}

func validOperationCounts(ops map[string]int64) bool {
	for id, n := range ops {
		if !validOperationID(id) || n < 0 {
			return false
		}
	}
	return true
}

func nonNegative(m map[string]int64) bool {
	for _, n := range m {
		if n < 0 {
			return false
		}
	}
	return true
}

// sum adds non-negative counts and notices when they overflow.
type sum struct {
	n        int64
	overflow bool
}

func (s *sum) add(n int64) {
	if n > math.MaxInt64-s.n {
		s.overflow = true
		return
	}
	s.n += n
}
