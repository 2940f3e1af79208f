// Package intake is the protocol between a sidecar's shipper and the
// collector: one batch is one HTTP request, built by NewRequest and read by
// ReadRequest, so neither side restates the other.
//
// A batch is a POST to Path with
//
//	Content-Type:       MediaType
//	X-Apisnoop-Source:  the sidecar's pod UID
//	X-Apisnoop-Seq:     the batch's sequence number, in decimal
//	X-Apisnoop-Release: the release the delta's operations belong to
//	Authorization:      Bearer <projected service account token>
//
// and the delta, coverage.Encode'd (zstd JSON), as its body.
//
// Sequence numbers make batches idempotent. A source numbers its batches
// 1, 2, 3, ...; a batch that was not answered 2xx is sent again unchanged,
// with the same number, and nothing new is sent before it is accepted. The
// collector therefore drops a batch whose Seq is at most the last Seq it
// accepted from that Source: it has it already.
package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// Path is where the collector serves the intake.
const Path = "/intake"

// MediaType is the Content-Type of a batch: a coverage.Encode'd delta.
const MediaType = "application/vnd.apisnoop.delta+zstd"

// Headers of a batch request.
const (
	HeaderSource  = "X-Apisnoop-Source"
	HeaderSeq     = "X-Apisnoop-Seq"
	HeaderRelease = "X-Apisnoop-Release"
)

// DefaultMaxBytes is the body bound ReadRequest applies when given none. A
// delta is bounded by its release's operations, coverage.MaxClients and
// coverage.MaxUnknownPaths; a full one of realistic clients and shapes
// encodes to well under a tenth of this.
const DefaultMaxBytes int64 = 8 << 20

// Batch is one delta from one source.
type Batch struct {
	// Source names the sending sidecar uniquely: its pod UID. At most 128
	// bytes of [A-Za-z0-9-].
	Source string
	// Seq is the batch's sequence number: strictly increasing per source
	// (the shipper starts at the clock in microseconds, so a restarted
	// sidecar goes on above its earlier run), the same for a batch sent
	// again.
	Seq uint64
	// Release is the Kubernetes release whose operations the delta counts,
	// like "1.37", or "cluster v1.37.2" for the live cluster's catalog: at
	// most 64 bytes of [A-Za-z0-9.+_-] and spaces.
	Release string
	// Delta is what the sidecar recorded since its previous batch.
	Delta *coverage.Delta
}

// NewRequest builds the request that sends b to the collector's url,
// authenticated by token when it is not empty. A batch that the collector
// would refuse (ReadRequest's checks of the headers and the delta) is not
// built: the error is an *Error, as ReadRequest would return.
func NewRequest(ctx context.Context, url string, b Batch, token string) (*http.Request, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	body, err := coverage.Encode(b.Delta)
	if err != nil {
		return nil, fmt.Errorf("build batch %d: %w", b.Seq, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build batch %d: %w", b.Seq, err)
	}
	req.Header.Set("Content-Type", MediaType)
	req.Header.Set(HeaderSource, b.Source)
	req.Header.Set(HeaderSeq, strconv.FormatUint(b.Seq, 10))
	req.Header.Set(HeaderRelease, b.Release)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// Token returns the bearer token a request carries, or "" when it carries
// none. The collector authenticates with it before it reads the batch.
func Token(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// ReadRequest reads the batch a request carries. It reads at most maxBytes
// of the body (DefaultMaxBytes when maxBytes <= 0): a longer body, or a
// Content-Length above it, is refused with 413 without decoding anything.
// The body is decompressed with coverage.Decode, whose decoder refuses
// output beyond its own bound (256 MiB), and the decoded delta is checked:
// no negative count, totals that add up, at most coverage.MaxClients
// clients and coverage.MaxUnknownPaths unknown shapes, operation IDs of at
// most 1024 bytes, no null entry.
//
// Every error is an *Error whose Status is what the collector answers:
// 405 for a method other than POST, 415 for another media type, 413 for a
// body above maxBytes, 400 for anything else malformed. It does not read
// the Authorization header; see Token.
func ReadRequest(r *http.Request, maxBytes int64) (Batch, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if r.Method != http.MethodPost {
		return Batch{}, refuse(http.StatusMethodNotAllowed, ReasonMethod, "read batch: method %s, want POST", r.Method)
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != MediaType {
		return Batch{}, refuse(http.StatusUnsupportedMediaType, ReasonMediaType, "read batch: Content-Type %q, want %s", ct, MediaType)
	}
	b, err := readHeaders(r.Header)
	if err != nil {
		return Batch{}, err
	}
	if r.ContentLength > maxBytes {
		return Batch{}, refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, "read batch %d: body of %d bytes, limit %d", b.Seq, r.ContentLength, maxBytes)
	}
	if r.Body == nil {
		return Batch{}, refuse(http.StatusBadRequest, ReasonBody, "read batch %d: no body", b.Seq)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBytes+1))
	if err != nil {
		return Batch{}, &Error{Status: http.StatusBadRequest, Reason: ReasonBody, Err: fmt.Errorf("read batch %d body: %w", b.Seq, err)}
	}
	if int64(len(body)) > maxBytes {
		return Batch{}, refuse(http.StatusRequestEntityTooLarge, ReasonTooLarge, "read batch %d: body above the limit of %d bytes", b.Seq, maxBytes)
	}
	b.Delta, err = coverage.Decode(body)
	if err != nil {
		return Batch{}, &Error{Status: http.StatusBadRequest, Reason: ReasonBody, Err: fmt.Errorf("read batch %d: %w", b.Seq, err)}
	}
	if err := checkDelta(b.Delta); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// readHeaders reads and checks the source, sequence and release.
func readHeaders(h http.Header) (Batch, error) {
	var b Batch
	var missing []string
	for _, name := range []string{HeaderSource, HeaderSeq, HeaderRelease} {
		if len(h.Values(name)) != 1 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return Batch{}, refuse(http.StatusBadRequest, ReasonHeader, "read batch: want one of each header %s", strings.Join(missing, ", "))
	}
	b.Source = h.Get(HeaderSource)
	b.Release = h.Get(HeaderRelease)
	seq := h.Get(HeaderSeq)
	var err error
	b.Seq, err = strconv.ParseUint(seq, 10, 64)
	if err != nil || strconv.FormatUint(b.Seq, 10) != seq {
		return Batch{}, refuse(http.StatusBadRequest, ReasonHeader, "read batch: %s %.32q is not a decimal number", HeaderSeq, seq)
	}
	if err := b.checkHeaders(); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// Reason names why a batch was refused, for metrics and logs.
type Reason string

// Reasons for refusing a batch.
const (
	ReasonMethod    Reason = "method"    // not a POST
	ReasonMediaType Reason = "mediaType" // Content-Type is not MediaType
	ReasonTooLarge  Reason = "tooLarge"  // body above the limit
	ReasonHeader    Reason = "header"    // source, sequence or release missing or malformed
	ReasonBody      Reason = "body"      // body unreadable or not an encoded delta
	ReasonDelta     Reason = "delta"     // decoded, but not a valid delta
)

// Error is a batch refused, with the HTTP status the collector answers.
type Error struct {
	// Status is http.StatusMethodNotAllowed, StatusUnsupportedMediaType,
	// StatusRequestEntityTooLarge or StatusBadRequest.
	Status int
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

func refuse(status int, reason Reason, format string, args ...any) *Error {
	return &Error{Status: status, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// StatusOf returns the HTTP status that answers an error of ReadRequest: the
// *Error's Status, or 500 for any other error.
func StatusOf(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Status
	}
	return http.StatusInternalServerError
}
