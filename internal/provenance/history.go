package provenance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/audit"
)

// Source says where a version's object comes from.
type Source string

const (
	// FromResponse: the API server's response to the write (RequestResponse
	// level): the object exactly as stored.
	FromResponse Source = "response"
	// FromRequest: the request body of a create or update, as the client
	// sent it: server-set fields (uid, defaults, status) are missing.
	FromRequest Source = "request"
	// Reconstructed: the request applied to the previous version's object;
	// Version.Note says how when it is an approximation.
	Reconstructed Source = "reconstructed"
	// Deleted: the write removed the object.
	Deleted Source = "deleted"
	// Unknown: the log carries no body for this write (Metadata level), or
	// there is no earlier object to apply it to.
	Unknown Source = "unknown"
)

// Version is one successful write to the object.
type Version struct {
	Number int       `json:"version"`
	Time   time.Time `json:"time"`
	// UID tells apart objects of the same name deleted and created again
	// (empty when the log has no response bodies).
	UID       string `json:"uid,omitempty"`
	User      string `json:"user"`
	UserAgent string `json:"userAgent,omitempty"`
	// Verb is create, update, patch, apply (a server-side apply patch) or
	// delete; Subresource is status or scale for writes through those.
	Verb        string `json:"verb"`
	Subresource string `json:"subresource,omitempty"`
	AuditID     string `json:"auditID"`
	// Object is the object after the write, as Source says; nil when
	// Unknown or Deleted without a body.
	Object map[string]any `json:"object,omitempty"`
	Source Source         `json:"source"`
	Note   string         `json:"note,omitempty"`
}

// Write names the write as people say it: "patch", "update status",
// "apply", "patch scale".
func (v *Version) Write() string {
	if v.Subresource == "" {
		return v.Verb
	}
	return v.Verb + " " + v.Subresource
}

// History is every version of the objects a Target names, oldest first.
type History struct {
	Target Target `json:"-"`
	// Resource, Group and Namespace as the audit events name them.
	Resource  string    `json:"resource"`
	Group     string    `json:"group,omitempty"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind,omitempty"`
	Versions  []Version `json:"versions"`
	Stats     Stats     `json:"stats"`
}

// Options tune Read.
type Options struct {
	// OnMalformed, when set, is told about each malformed line.
	OnMalformed func(source string, line int64, err error)
}

// Read reads audit logs (in the order given, oldest first) and returns the
// history of the object the target names. It fails when the target names
// objects in more than one namespace or resource, saying which, so the
// caller can pick one with a namespace or a group.
func Read(ctx context.Context, sources []audit.Source, target Target, opts Options) (*History, error) {
	writes, stats, err := readWrites(ctx, sources, target, opts.OnMalformed)
	if err != nil {
		return nil, err
	}
	if len(writes) == 0 {
		return nil, fmt.Errorf("no successful write to %s in the audit logs (%d lines read): check the name, the namespace and that the log records this resource", target, stats.Lines)
	}
	if err := oneObject(writes); err != nil {
		return nil, err
	}
	first := writes[0].event.ObjectRef
	h := &History{Target: target, Resource: first.Resource, Group: first.APIGroup, Namespace: first.Namespace, Name: target.Name, Stats: stats}
	var current map[string]any // the object after the last version; nil while unknown or deleted
	var uid string
	for i, w := range writes {
		ev := &w.event
		if h.Kind == "" {
			h.Kind = w.kind
		}
		v := Version{
			Number:      i + 1,
			Time:        ev.StageTimestamp.Time.UTC(),
			User:        ev.User.Username,
			UserAgent:   ev.UserAgent,
			Verb:        ev.Verb,
			Subresource: ev.ObjectRef.Subresource,
			AuditID:     string(ev.AuditID),
		}
		if ev.Verb == "patch" && isApply(ev.RequestURI, w) {
			v.Verb = "apply"
		}
		if ev.Verb == "create" && ev.ObjectRef.Subresource == "" {
			// A new object; its uid, when the log says, tells it apart.
			current, uid = nil, string(ev.ObjectRef.UID)
		}
		if w.response != nil {
			v.Object, v.Source = w.response, FromResponse
		} else {
			v.Object, v.Source, v.Note = apply(current, w, h.Kind)
		}
		if ev.Verb == "delete" && v.Source != FromResponse {
			v.Object, v.Source = nil, Deleted
		}
		if id := metadataString(v.Object, "uid"); id != "" {
			// A response, or an update's body, names the object's uid.
			uid = id
		}
		v.UID = uid
		if v.Object != nil && h.Kind == "" {
			h.Kind, _ = v.Object["kind"].(string)
		}
		current = v.Object
		if ev.Verb == "delete" {
			// An object deleted with finalizers is still there, with a
			// deletionTimestamp; otherwise it is gone.
			if v.Source == FromResponse && metadataString(v.Object, "deletionTimestamp") == "" {
				v.Source = Deleted
			}
			if v.Source == Deleted {
				current = nil
			}
		}
		h.Versions = append(h.Versions, v)
	}
	return h, nil
}

// oneObject fails when the writes are about objects in more than one
// namespace or resource.
func oneObject(writes []*write) error {
	var found []string
	for _, w := range writes {
		ref := w.event.ObjectRef
		name := ref.Resource
		if ref.APIGroup != "" {
			name += "." + ref.APIGroup
		}
		if ref.Namespace != "" {
			name += " in namespace " + ref.Namespace
		}
		if !slices.Contains(found, name) {
			found = append(found, name)
		}
	}
	if len(found) > 1 {
		return fmt.Errorf("the name matches more than one object: %s; pick one with --namespace or RESOURCE.GROUP", strings.Join(found, ", "))
	}
	return nil
}

// isApply tells a server-side apply from other patches. The audit event
// does not record the patch's content type; an apply names a field manager
// (required for apply) and sends a whole object with apiVersion and kind,
// which other patches do not.
func isApply(requestURI string, w *write) bool {
	u, err := url.ParseRequestURI(requestURI)
	if err != nil || u.Query().Get("fieldManager") == "" {
		return false
	}
	if u.Query().Has("force") {
		// force is accepted for apply patches only.
		return true
	}
	var body map[string]any
	if w.event.RequestObject == nil || json.Unmarshal(w.event.RequestObject.Raw, &body) != nil {
		return false
	}
	_, hasAPIVersion := body["apiVersion"]
	_, hasKind := body["kind"]
	return hasAPIVersion && hasKind
}
