// Package coverage aggregates matched requests into coverage: hits per
// operation by verb and status class, per client, per e2e test, unknown and
// failed calls, and, when request bodies are recorded, the field paths the
// bodies of each operation set, used unknown or gave ill-typed values
// (Delta.AddFields, from package fields). A Delta is what a sidecar ships
// and what the collector merges; a Report puts a Delta next to a release's
// catalog, and its field coverage next to the catalog's body schemas.
package coverage

import (
	"strings"
)

// MaxUnknownPaths bounds the distinct unknown request shapes a Delta keeps;
// requests beyond it are still counted in UnknownRequests and Overflow.
const MaxUnknownPaths = 5000

// MaxClients bounds the distinct clients a Delta keeps; requests of further
// clients are still counted per operation and in Overflow.
const MaxClients = 5000

// Client is who made a request. It never holds a credential.
type Client struct {
	Pod            string `json:"pod,omitempty"`
	Namespace      string `json:"namespace,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	User           string `json:"user,omitempty"`
	UserAgent      string `json:"userAgent,omitempty"`
}

// Hit is one matched request as the aggregator sees it.
type Hit struct {
	// OperationID is the matched operation, empty when the request is unknown
	// to the release.
	OperationID string
	// Verb is the API server's verb for the request (get, list, watch, ...).
	Verb string
	// Status is the HTTP status code of the response; 0 when unknown.
	Status int
	// Unknown describes an unknown request: method and path shape, like
	// "GET /apis/example.com/v1/namespaces/{namespace}/widgets".
	Unknown string
	Client  Client
	// Test is the e2e test named in the user agent, if any.
	Test string
}

// StatusClass groups status codes: "2xx", "3xx", "4xx", "5xx" or "other".
func StatusClass(code int) string {
	switch {
	case code >= 200 && code < 300:
		return "2xx"
	case code >= 300 && code < 400:
		return "3xx"
	case code >= 400 && code < 500:
		return "4xx"
	case code >= 500 && code < 600:
		return "5xx"
	}
	return "other"
}

// failed says whether a status code counts as a failed call.
func failed(code int) bool { return code >= 400 }

// Counts counts requests by verb and by status class.
type Counts struct {
	Requests int64            `json:"requests"`
	ByVerb   map[string]int64 `json:"byVerb,omitempty"`
	ByStatus map[string]int64 `json:"byStatus,omitempty"`
}

func (c *Counts) add(verb string, status int, n int64) {
	c.Requests += n
	if c.ByVerb == nil {
		c.ByVerb = make(map[string]int64, 2)
		c.ByStatus = make(map[string]int64, 2)
	}
	c.ByVerb[verb] += n
	c.ByStatus[StatusClass(status)] += n
}

func (c *Counts) merge(o *Counts) {
	c.Requests += o.Requests
	if c.ByVerb == nil {
		c.ByVerb = make(map[string]int64, len(o.ByVerb))
	}
	if c.ByStatus == nil {
		c.ByStatus = make(map[string]int64, len(o.ByStatus))
	}
	for k, v := range o.ByVerb {
		c.ByVerb[k] += v
	}
	for k, v := range o.ByStatus {
		c.ByStatus[k] += v
	}
}

// ClientCounts is what one client did.
type ClientCounts struct {
	Requests   int64            `json:"requests"`
	Failed     int64            `json:"failed"`
	Unknown    int64            `json:"unknown"`
	Operations map[string]int64 `json:"operations,omitempty"`
}

// Delta is a mergeable aggregate of hits. The zero value is empty and ready.
type Delta struct {
	Requests        int64 `json:"requests"`
	FailedRequests  int64 `json:"failedRequests"`
	UnknownRequests int64 `json:"unknownRequests"`
	// Overflow counts requests whose unknown shape or client was not kept
	// because of the bounds; they are in every other count.
	Overflow int64 `json:"overflow,omitempty"`
	// Operations maps operationId to its counts.
	Operations map[string]*Counts `json:"operations,omitempty"`
	// Unknown maps an unknown request shape to its counts.
	Unknown map[string]*Counts `json:"unknown,omitempty"`
	// Clients maps a client to what it did.
	Clients map[Client]*ClientCounts `json:"-"`
	// Tests maps an e2e test name to the operations it hit.
	Tests map[string]map[string]int64 `json:"tests,omitempty"`
	// Fields maps operationId to what its requests' bodies set (AddFields,
	// AddMalformedBodies); empty unless bodies are recorded.
	Fields map[string]*FieldCounts `json:"fields,omitempty"`
	// Writes are the writes to objects, with their bodies, in the order
	// they were applied (AddWrite); empty unless bodies are recorded. The
	// newest are kept within MaxWrites and MaxWriteBytes, and the older
	// ones counted in WritesDropped.
	Writes        []Write `json:"writes,omitempty"`
	WritesDropped int64   `json:"writesDropped,omitempty"`

	// fieldEntries counts the paths held in Fields, for MaxFieldEntries.
	// AddFields, Merge and UnmarshalJSON keep it, so build deltas with
	// them rather than by filling Fields directly.
	fieldEntries int
	// writeBytes counts the body bytes of Writes, for MaxWriteBytes.
	writeBytes int
}

// Add counts one hit.
func (d *Delta) Add(h Hit) { d.AddN(h, 1) }

// AddN counts n identical hits.
func (d *Delta) AddN(h Hit, n int64) {
	d.Requests += n
	isFailed := failed(h.Status)
	if isFailed {
		d.FailedRequests += n
	}
	if h.OperationID == "" {
		d.UnknownRequests += n
		if c := d.unknownCounts(h.Unknown); c != nil {
			c.add(h.Verb, h.Status, n)
		} else {
			d.Overflow += n
		}
	} else {
		boundedEntry(&d.Operations, h.OperationID, -1).add(h.Verb, h.Status, n)
		if h.Test != "" {
			if d.Tests == nil {
				d.Tests = make(map[string]map[string]int64)
			}
			ops := d.Tests[h.Test]
			if ops == nil {
				ops = make(map[string]int64)
				d.Tests[h.Test] = ops
			}
			ops[h.OperationID] += n
		}
	}
	cc := d.clientCounts(h.Client)
	if cc == nil {
		if h.OperationID != "" {
			d.Overflow += n
		}
		return
	}
	cc.Requests += n
	if isFailed {
		cc.Failed += n
	}
	if h.OperationID == "" {
		cc.Unknown += n
		return
	}
	if cc.Operations == nil {
		cc.Operations = make(map[string]int64)
	}
	cc.Operations[h.OperationID] += n
}

func (d *Delta) unknownCounts(shape string) *Counts {
	return boundedEntry(&d.Unknown, shape, MaxUnknownPaths)
}

func (d *Delta) clientCounts(client Client) *ClientCounts {
	return boundedEntry(&d.Clients, client, MaxClients)
}

// boundedEntry returns the entry of key in *m, creating the map and the
// entry as needed, or nil when the entry is new and the map already holds
// max entries (max < 0: no bound).
func boundedEntry[K comparable, V any](m *map[K]*V, key K, max int) *V {
	if *m == nil {
		*m = make(map[K]*V)
	}
	v := (*m)[key]
	if v == nil {
		if max >= 0 && len(*m) >= max {
			return nil
		}
		v = new(V)
		(*m)[key] = v
	}
	return v
}

// Merge adds every count of o to d. Merging is commutative and associative,
// so deltas can arrive in any order.
func (d *Delta) Merge(o *Delta) {
	if o == nil {
		return
	}
	d.Requests += o.Requests
	d.FailedRequests += o.FailedRequests
	d.UnknownRequests += o.UnknownRequests
	d.Overflow += o.Overflow
	for id, c := range o.Operations {
		boundedEntry(&d.Operations, id, -1).merge(c)
	}
	for shape, c := range o.Unknown {
		mine := d.unknownCounts(shape)
		if mine == nil {
			d.Overflow += c.Requests
			continue
		}
		mine.merge(c)
	}
	for client, c := range o.Clients {
		mine := d.clientCounts(client)
		if mine == nil {
			d.Overflow += c.Requests
			continue
		}
		mine.Requests += c.Requests
		mine.Failed += c.Failed
		mine.Unknown += c.Unknown
		for id, n := range c.Operations {
			if mine.Operations == nil {
				mine.Operations = make(map[string]int64, len(c.Operations))
			}
			mine.Operations[id] += n
		}
	}
	d.mergeFields(o)
	d.mergeWrites(o)
	for test, ops := range o.Tests {
		if d.Tests == nil {
			d.Tests = make(map[string]map[string]int64, len(o.Tests))
		}
		mine := d.Tests[test]
		if mine == nil {
			mine = make(map[string]int64, len(ops))
			d.Tests[test] = mine
		}
		for id, n := range ops {
			mine[id] += n
		}
	}
}

// Empty says whether the delta holds no request.
func (d *Delta) Empty() bool { return d.Requests == 0 }

// e2eSeparator splits an e2e.test user agent from the test it runs:
// "e2e.test/v1.37.0 (linux/amd64) kubernetes/abc -- [sig-apps] Deployment ...".
const e2eSeparator = " -- "

// TestFromUserAgent returns the e2e test a user agent names, or "".
func TestFromUserAgent(userAgent string) string {
	if !strings.HasPrefix(userAgent, "e2e.test/") {
		return ""
	}
	_, test, ok := strings.Cut(userAgent, e2eSeparator)
	if !ok {
		return ""
	}
	return strings.TrimSpace(test)
}
