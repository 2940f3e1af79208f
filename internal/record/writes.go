package record

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// write describes ev as a write to an object, or reports false when it is
// not one (a read, a collection, a deletecollection) or names no object it
// can tell (a create by generateName, a Secret created as protobuf, whose
// body the proxy drops). The body is kept when it is JSON and whole: a body
// written as protobuf, or longer than the proxy's cap, leaves the write
// without one, and provenance says that version's object is not known.
func (r *Recorder) write(ev *Event, info match.RequestInfo) (coverage.Write, bool) {
	if !info.IsResourceRequest || !slices.Contains(coverage.WriteVerbs, info.Verb) {
		return coverage.Write{}, false
	}
	w := coverage.Write{
		ID:          r.run + "-" + strconv.FormatUint(ev.ID, 10),
		Received:    ev.Time,
		Completed:   ev.Time.Add(ev.Duration),
		Verb:        info.Verb,
		Group:       info.APIGroup,
		Version:     info.APIVersion,
		Resource:    info.Resource,
		Subresource: info.Subresource,
		Namespace:   info.Namespace,
		Name:        info.Name,
		RequestURI:  ev.Path,
		User:        ev.Client.User,
		UserAgent:   ev.UserAgent,
		Status:      ev.Status,
	}
	if ev.RawQuery != "" {
		w.RequestURI += "?" + ev.RawQuery
	}
	if ev.Client.ServiceAccount != "" {
		w.User = "system:serviceaccount:" + ev.Client.Namespace + ":" + ev.Client.ServiceAccount
	}
	if body := bytes.TrimSpace(ev.Body); !ev.BodyTruncated && len(body) > 0 && json.Valid(body) {
		// The proxy's buffer is reused after Observe: the write keeps a copy.
		w.Request = bytes.Clone(body)
	}
	if w.Name == "" && w.Verb == "create" {
		// A create names its object in its body only.
		if w.Request != nil {
			var object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if json.Unmarshal(w.Request, &object) == nil {
				w.Name = object.Metadata.Name
			}
		} else if !ev.BodyTruncated {
			w.Name, _ = fields.ProtobufName(ev.Body)
		}
	}
	return w, w.Name != ""
}
