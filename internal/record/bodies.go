package record

import (
	"sync/atomic"

	"apisnoop.dev/kube-apisnoop/internal/bodyfields"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

// bodyOutcome is what became of one request body, a label value of the
// apisnoop_record_request_bodies_total metric. Unread also covers protobuf
// deletes, CBOR, a YAML apply patch and a patch of unknown type; Truncated
// is a body longer than the proxy's cap.
type bodyOutcome = bodyfields.Outcome

const (
	bodyWalked    = bodyfields.Walked
	bodyMalformed = bodyfields.Malformed
	bodyTruncated = bodyfields.Truncated
	bodyUnread    = bodyfields.Unread
)

// bodyWalker reads request bodies for field coverage; the catalog's schemas
// are loaded when the first body arrives, so a proxy that keeps no bodies
// never holds them.
type bodyWalker struct {
	reader *bodyfields.Reader
	// loaded says the schemas were asked for (the tests check that bodies
	// alone make the recorder load them).
	loaded atomic.Bool
}

func newBodyWalker(c *catalog.Catalog) *bodyWalker {
	return &bodyWalker{reader: bodyfields.NewReader(c)}
}

// walk reads the body of ev, a request of operationID.
func (b *bodyWalker) walk(operationID string, ev *Event) bodyfields.Body {
	b.loaded.Store(true)
	unread := bodyfields.Body{Outcome: bodyUnread, OperationID: operationID}
	if !b.reader.Reads(operationID) {
		return unread
	}
	kind, ok := fields.KindOf(ev.Method, ev.ContentType)
	if !ok {
		return unread
	}
	if ev.BodyTruncated {
		return bodyfields.Body{Outcome: bodyTruncated, OperationID: operationID}
	}
	return b.reader.Read(operationID, kind, ev.Body)
}
