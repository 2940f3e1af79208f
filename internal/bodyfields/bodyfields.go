// Package bodyfields reads request bodies for field coverage the one way
// every recorder does (the sidecar, the audit log reader, the audit sink):
// against the catalog's schemas, loaded when the first body arrives, with
// the paths the collector's intake refuses dropped and counted, and adds
// what a body set to a delta.
package bodyfields

import (
	"errors"
	"sync"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
	"apisnoop.dev/kube-apisnoop/internal/intake"
)

// Outcome is what became of one body: the result label of the
// apisnoop_*_request_bodies_total metrics.
type Outcome string

const (
	// Walked: read against the operation's schema.
	Walked Outcome = "walked"
	// Malformed: not JSON (or protobuf) of its kind; counted in
	// FieldCounts.Malformed.
	Malformed Outcome = "malformed"
	// Truncated: cut by a recorder's cap, so not all of it was kept. What
	// was kept cannot be read as a whole body either: counted in
	// FieldCounts.Malformed too, and apart in the metric.
	Truncated Outcome = "truncated"
	// Unread: not read and not counted: no schemas, no body schema for the
	// operation, a body the walker does not read (YAML, CBOR).
	Unread Outcome = "unread"
)

// Body is what one body adds to a delta.
type Body struct {
	Outcome     Outcome
	OperationID string
	Result      fields.Result
	// Dropped counts paths left out because the collector would refuse
	// them (intake.ValidFieldPath), counted as overflow.
	Dropped int64
}

// Walk reads body, a request of operationID written as kind, with w.
func Walk(w *fields.Walker, operationID string, kind fields.BodyKind, body []byte) Body {
	r, err := w.Walk(operationID, kind, body)
	switch {
	case errors.Is(err, fields.ErrMalformed):
		return Body{Outcome: Malformed, OperationID: operationID}
	case err != nil: // ErrNotJSON, ErrNoSchema
		return Body{Outcome: Unread, OperationID: operationID}
	}
	b := Body{Outcome: Walked, OperationID: operationID}
	b.Dropped = intake.DropInvalidFieldPaths(&r)
	b.Result = r
	return b
}

// AddTo counts n requests with the body in d, on its operation; a body not
// read adds nothing.
func (b *Body) AddTo(d *coverage.Delta, n int64) {
	switch b.Outcome {
	case Walked:
		d.AddFieldsDropped(b.OperationID, b.Result, b.Dropped, n)
	case Malformed, Truncated:
		d.AddMalformedBodies(b.OperationID, n)
	}
}

// LazySchemas returns a loader of c's schemas that loads them the first
// time it is called, so that a recorder that sees no body never holds
// them. A nil catalog has none (catalog.ErrNoSchemas).
func LazySchemas(c *catalog.Catalog) func() (*catalog.Schemas, error) {
	return sync.OnceValues(func() (*catalog.Schemas, error) {
		if c == nil {
			return nil, catalog.ErrNoSchemas
		}
		return c.Schemas()
	})
}

// Reader reads bodies from several goroutines at once: a fields.Walker
// keeps caches and is not safe for concurrent use, so each Read takes one
// from a pool.
type Reader struct {
	schemas func() (*catalog.Schemas, error)
	walkers sync.Pool
}

// NewReader returns a reader of bodies against c's schemas, loaded when
// first needed.
func NewReader(c *catalog.Catalog) *Reader {
	return &Reader{schemas: LazySchemas(c)}
}

// Reads says whether bodies of operationID are read: the catalog has
// schemas and the operation a body schema. It loads the schemas.
func (r *Reader) Reads(operationID string) bool {
	schemas, err := r.schemas()
	if err != nil {
		return false
	}
	_, ok := schemas.Body(operationID)
	return ok
}

// Read reads body, a request of operationID written as kind.
func (r *Reader) Read(operationID string, kind fields.BodyKind, body []byte) Body {
	schemas, err := r.schemas()
	if err != nil {
		return Body{Outcome: Unread, OperationID: operationID}
	}
	w, _ := r.walkers.Get().(*fields.Walker)
	if w == nil {
		w = fields.NewWalker(schemas)
	}
	b := Walk(w, operationID, kind, body)
	r.walkers.Put(w) // b holds nothing of the walker's
	return b
}
