package coverage

import (
	"cmp"
	"encoding/json"
	"slices"
	"time"
)

// Bounds of the writes a Delta keeps (see Delta.Writes): the newest are
// kept, the older ones counted in Delta.WritesDropped. A session's results
// are persisted in ConfigMaps of 1 MiB each; bodies compress about tenfold,
// so a full set of writes adds a few shards.
const (
	// MaxWrites bounds the writes kept.
	MaxWrites = 5000
	// MaxWriteBytes bounds the bytes of their bodies together.
	MaxWriteBytes = 8 << 20
	// MaxWriteIDBytes bounds a write's ID.
	MaxWriteIDBytes = 256
)

// WriteVerbs are the verbs of the requests kept as writes: those that
// change the object they name.
var WriteVerbs = []string{"create", "update", "patch", "delete"}

// Write is one request that changed, or tried to change, one object: what
// object provenance (kubectl snoop history) is built from, kept when a
// session records bodies. It never holds a header, and never the body of a
// Secret (NewWrite and AddWrite drop them).
type Write struct {
	// ID tells writes apart: the API server's audit ID, or the recording
	// sidecar's source and request number.
	ID string `json:"id"`
	// Received is when the request arrived, Completed when it was answered:
	// writes are ordered by Completed, as the API server applied them.
	Received  time.Time `json:"received"`
	Completed time.Time `json:"completed"`
	// Verb is create, update, patch or delete.
	Verb        string `json:"verb"`
	Group       string `json:"group,omitempty"`
	Version     string `json:"version,omitempty"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	// Name is the object's, from the path or, for a create, its body; empty
	// for a create by generateName whose answer is not kept.
	Name string `json:"name,omitempty"`
	// RequestURI is the request's path and query, as an audit event has it:
	// a patch with a field manager may be a server-side apply.
	RequestURI string `json:"requestURI,omitempty"`
	User       string `json:"user,omitempty"`
	UserAgent  string `json:"userAgent,omitempty"`
	// Status is the HTTP status of the answer.
	Status int `json:"status"`
	// Request is the request body when it is JSON and was kept whole; for
	// a patch, the patch. Response is the object the API server answered
	// with, where the source has it (an audit event at RequestResponse
	// level).
	Request  json.RawMessage `json:"request,omitempty"`
	Response json.RawMessage `json:"response,omitempty"`
}

// IsSecret reports whether the write is to a Secret, whose bodies are never
// kept.
func (w *Write) IsSecret() bool { return w.Group == "" && w.Resource == "secrets" }

func (w *Write) bodyBytes() int { return len(w.Request) + len(w.Response) }

// writeOrder orders writes as they were applied; the ID breaks ties so that
// the order, and which writes the bounds keep, do not depend on the order
// writes were added or merged in.
func writeOrder(a, b Write) int {
	if c := a.Completed.Compare(b.Completed); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// AddWrite keeps w, dropping its bodies when it is to a Secret, and then
// the oldest writes beyond MaxWrites and MaxWriteBytes.
func (d *Delta) AddWrite(w Write) {
	if w.IsSecret() {
		w.Request, w.Response = nil, nil
	}
	i, _ := slices.BinarySearchFunc(d.Writes, w, writeOrder)
	d.Writes = slices.Insert(d.Writes, i, w)
	d.writeBytes += w.bodyBytes()
	d.trimWrites()
}

// mergeWrites adds o's writes to d's, in order, and keeps the newest within
// the bounds: merged in any order, deltas keep the same writes.
func (d *Delta) mergeWrites(o *Delta) {
	d.WritesDropped += o.WritesDropped
	if len(o.Writes) == 0 {
		return
	}
	merged := make([]Write, 0, len(d.Writes)+len(o.Writes))
	mine, theirs := d.Writes, o.Writes
	for len(mine) > 0 && len(theirs) > 0 {
		if writeOrder(theirs[0], mine[0]) < 0 {
			merged, theirs = append(merged, theirs[0]), theirs[1:]
		} else {
			merged, mine = append(merged, mine[0]), mine[1:]
		}
	}
	merged = append(append(merged, mine...), theirs...)
	d.Writes = merged
	d.writeBytes += o.writeBytes
	d.trimWrites()
}

// trimWrites drops the oldest writes until both bounds hold.
func (d *Delta) trimWrites() {
	drop := 0
	for len(d.Writes)-drop > MaxWrites || d.writeBytes > MaxWriteBytes {
		d.writeBytes -= d.Writes[drop].bodyBytes()
		drop++
	}
	if drop > 0 {
		d.Writes = slices.Clone(d.Writes[drop:])
		d.WritesDropped += int64(drop)
	}
}

// countWriteBytes sets writeBytes after decoding; writes are put in order,
// as AddWrite keeps them, whatever order they came in.
func (d *Delta) countWriteBytes() {
	slices.SortFunc(d.Writes, writeOrder)
	d.writeBytes = 0
	for i := range d.Writes {
		d.writeBytes += d.Writes[i].bodyBytes()
	}
}

// PrefixWriteIDs puts prefix before the ID of every write, as the collector
// does with a batch's source: IDs a sidecar makes are unique only among its
// own.
func (d *Delta) PrefixWriteIDs(prefix string) {
	for i := range d.Writes {
		d.Writes[i].ID = prefix + d.Writes[i].ID
	}
	slices.SortFunc(d.Writes, writeOrder)
}
