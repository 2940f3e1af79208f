package record

import (
	"errors"
	"sync"
	"sync/atomic"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
	"apisnoop.dev/kube-apisnoop/internal/intake"
)

// bodyOutcome is what became of one request body, a label value of the
// apisnoop_record_request_bodies_total metric.
type bodyOutcome string

const (
	// bodyWalked: the body was read against its operation's schema.
	bodyWalked bodyOutcome = "walked"
	// bodyMalformed: not JSON of its kind (fields.ErrMalformed); counted in
	// FieldCounts.Malformed.
	bodyMalformed bodyOutcome = "malformed"
	// bodyTruncated: longer than the proxy's cap, so not all of it was
	// kept. What was kept cannot be read as a whole body either, so it is
	// counted in FieldCounts.Malformed too.
	bodyTruncated bodyOutcome = "truncated"
	// bodyUnread: not read and not counted in the delta: protobuf or CBOR,
	// a YAML apply patch, a patch of unknown type, an operation without a
	// body schema, or a catalog without schemas.
	bodyUnread bodyOutcome = "unread"
)

// bodyWalker reads request bodies for field coverage. The catalog's schemas
// are loaded when the first body arrives, so a proxy that keeps no bodies
// never holds them. Walkers keep caches and are not safe for concurrent use,
// so each Observe takes one from a pool.
type bodyWalker struct {
	schemas func() (*catalog.Schemas, error)
	walkers sync.Pool
	// loaded says the schemas were asked for (the tests check that bodies
	// alone make the recorder load them).
	loaded atomic.Bool
}

func newBodyWalker(c *catalog.Catalog) *bodyWalker {
	b := &bodyWalker{}
	b.schemas = sync.OnceValues(func() (*catalog.Schemas, error) {
		b.loaded.Store(true)
		if c == nil {
			return nil, catalog.ErrNoSchemas
		}
		return c.Schemas()
	})
	return b
}

// bodyFields is what one body adds to a delta.
type bodyFields struct {
	outcome bodyOutcome
	result  fields.Result
	// dropped counts paths left out because the collector would refuse
	// them (intake.ValidFieldPath): unknown fields a client made up with
	// names that are empty, too long or not UTF-8.
	dropped int64
}

// walk reads the body of ev, a request of operationID.
func (b *bodyWalker) walk(operationID string, ev *Event) bodyFields {
	schemas, err := b.schemas()
	if err != nil {
		return bodyFields{outcome: bodyUnread}
	}
	if _, ok := schemas.Body(operationID); !ok {
		return bodyFields{outcome: bodyUnread}
	}
	kind, ok := fields.KindOf(ev.Method, ev.ContentType)
	if !ok {
		return bodyFields{outcome: bodyUnread}
	}
	if ev.BodyTruncated {
		return bodyFields{outcome: bodyTruncated}
	}
	w, _ := b.walkers.Get().(*fields.Walker)
	if w == nil {
		w = fields.NewWalker(schemas)
	}
	r, err := w.Walk(operationID, kind, ev.Body)
	b.walkers.Put(w) // r holds nothing of the walker's
	switch {
	case errors.Is(err, fields.ErrMalformed):
		return bodyFields{outcome: bodyMalformed}
	case err != nil: // ErrNotJSON, ErrNoSchema
		return bodyFields{outcome: bodyUnread}
	}
	out := bodyFields{outcome: bodyWalked}
	out.dropped = intake.DropInvalidFieldPaths(&r)
	out.result = r
	return out
}

// addTo counts the body in d, on operationID. Bodies not read add nothing.
func (f bodyFields) addTo(d *coverage.Delta, operationID string) {
	switch f.outcome {
	case bodyWalked:
		d.AddFieldsDropped(operationID, f.result, f.dropped, 1)
	case bodyMalformed, bodyTruncated:
		d.AddMalformedBodies(operationID, 1)
	}
}
