package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/bodyfields"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

// BodyKind tells how an audit event's requestObject is written, for
// fields.Walker. The audit log does not record the Content-Type, so a
// patch's type is inferred as package provenance infers it (which imports
// this package, so its helper cannot be shared): a JSON array is a JSON
// patch; a server-side apply names a field manager and either force or a
// body with apiVersion and kind; any other patch is a strategic merge
// patch for a built-in API group and a merge patch for others (custom
// resources take no strategic merge patch). The two differ only in the
// strategic merge directives ($patch, $retainKeys, ...), which a merge
// patch would have as unknown fields; a custom resource in a *.k8s.io group
// is taken as built-in. Other verbs carry an object.
func BodyKind(ev *Event, op *catalog.Operation) fields.BodyKind {
	if ev.Method() != http.MethodPatch {
		return fields.Object
	}
	body := bytes.TrimLeft(ev.RequestObject, " \t\r\n")
	if len(body) > 0 && body[0] == '[' {
		return fields.JSONPatch
	}
	if isApply(ev.RequestURI, body) {
		return fields.ApplyPatch
	}
	group := ""
	if op != nil {
		group = op.Group
	} else if ev.ObjectRef != nil {
		group = ev.ObjectRef.APIGroup
	}
	if builtInGroup(group) {
		return fields.StrategicMergePatch
	}
	return fields.MergePatch
}

// builtInGroup says whether an API group is one of Kubernetes' own: the
// core group, a group without a dot (apps, batch, policy...), or one under
// k8s.io.
func builtInGroup(group string) bool {
	return !strings.Contains(group, ".") || group == "k8s.io" || strings.HasSuffix(group, ".k8s.io")
}

// isApply tells a server-side apply from other patches, as provenance
// does: an apply needs a field manager, force is taken by applies only, and
// an apply sends an object with apiVersion and kind, which other patches
// do not.
func isApply(requestURI string, body []byte) bool {
	_, query, ok := strings.Cut(requestURI, "?")
	if !ok {
		return false
	}
	q, err := url.ParseQuery(query)
	if err != nil || q.Get("fieldManager") == "" {
		return false
	}
	if q.Has("force") {
		return true
	}
	var top struct {
		APIVersion, Kind *string
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return false
	}
	return top.APIVersion != nil && top.Kind != nil
}

// bodyTable holds the distinct field results of the request bodies one
// worker read (most requests of a log repeat a few bodies), so that a
// payload stays an index.
type bodyTable struct {
	schemas func() (*catalog.Schemas, error)
	walker  *fields.Walker
	index   map[string]int32
	bodies  []bodyfields.Body
	key     []byte
}

// add reads the requestObject of ev, a request of op, and returns the index
// of its result, or -1 for a body that adds nothing: no schemas, no body
// schema for the operation, an apply patch written as YAML.
func (t *bodyTable) add(ev *Event, op *catalog.Operation) int32 {
	if op == nil || len(ev.RequestObject) == 0 || string(ev.RequestObject) == "null" {
		return -1
	}
	schemas, err := t.schemas()
	if err != nil {
		return -1
	}
	if _, ok := schemas.Body(op.ID); !ok {
		return -1
	}
	if t.walker == nil {
		t.walker = fields.NewWalker(schemas)
		t.index = make(map[string]int32)
	}
	e := bodyfields.Walk(t.walker, op.ID, BodyKind(ev, op), ev.RequestObject)
	if e.Outcome == bodyfields.Unread {
		return -1
	}
	// The key is the entry, its strings length-prefixed.
	k := t.key[:0]
	k = appendString(k, e.OperationID)
	k = binary.AppendUvarint(k, uint64(e.Dropped))
	k = appendString(k, string(e.Outcome))
	for _, paths := range [...][]string{e.Result.Set, e.Result.Unknown, e.Result.IllTyped} {
		k = binary.AppendUvarint(k, uint64(len(paths)))
		for _, p := range paths {
			k = appendString(k, p)
		}
	}
	t.key = k
	if i, ok := t.index[string(k)]; ok {
		return i
	}
	i := int32(len(t.bodies))
	t.bodies = append(t.bodies, e)
	t.index[string(k)] = i
	return i
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}
