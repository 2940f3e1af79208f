package intake

import (
	"math"
	"net/http"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// Bounds of what a batch carries besides its delta's own bounds.
const (
	maxSource  = 128 // a pod UID has 36
	maxRelease = 64
	// maxOperationID is far above the longest operationId even of a custom
	// resource (a 253-byte group is the bulk of it).
	maxOperationID = 1024
)

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
// bounded and no entry is null. Merging a delta that passes cannot panic.
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
