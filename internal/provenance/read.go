// Package provenance tells how an object evolved, from the bodies API server
// audit events carry at Request and RequestResponse level: every write to
// it, by whom, the object after each write, the difference between two
// versions and the first version where fields took given values.
package provenance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"apisnoop.dev/kube-apisnoop/internal/audit"
)

// Target names the object whose history is wanted, as on kubectl's command
// line: RESOURCE/NAME, where RESOURCE is the plural resource or the kind,
// either optionally followed by ".group" (deployments.apps/web,
// Deployment/web, widgets.example.com/w1). Namespace empty matches any.
type Target struct {
	Resource, Group string
	Name, Namespace string
}

// ParseTarget reads RESOURCE/NAME.
func ParseTarget(arg, namespace string) (Target, error) {
	resource, name, ok := strings.Cut(arg, "/")
	if !ok || resource == "" || name == "" || strings.Contains(name, "/") {
		return Target{}, fmt.Errorf("%q is not RESOURCE/NAME, such as deployments.apps/web or configmap/settings", arg)
	}
	t := Target{Name: name, Namespace: namespace}
	t.Resource, t.Group, _ = strings.Cut(strings.ToLower(resource), ".")
	return t, nil
}

func (t Target) String() string {
	s := t.Resource
	if t.Group != "" {
		s += "." + t.Group
	}
	return s + "/" + t.Name
}

// Stats count what a read saw.
type Stats struct {
	// Lines read, Malformed among them (counted and skipped).
	Lines, Malformed int64
	// Writes to the target that succeeded, and Failed ones (not versions).
	Writes, Failed int
}

// write is one successful mutating request on an object, with its bodies.
type write struct {
	event    auditv1.Event
	kind     string // the object's kind, from a body, when one says
	line     int64
	response map[string]any // the response body, when it is the object
}

// mutatingVerbs change the object they name. deletecollection is absent:
// its events name no object.
var mutatingVerbs = map[string]bool{"create": true, "update": true, "patch": true, "delete": true}

// versionSubresources are those whose writes change the object: the
// object itself, its status and its scale. Writes through other
// subresources (pods/binding, pods/eviction, serviceaccounts/token, ...) are
// not versions of their own; what they change shows in the next version's
// object when the log has it.
var versionSubresources = map[string]bool{"": true, "status": true, "scale": true}

// readWrites reads the audit logs in order and returns every successful
// write to an object the target names, once each (a ResponseComplete or
// Panic event seen again in overlapping logs is skipped by audit ID).
func readWrites(ctx context.Context, sources []audit.Source, target Target, onMalformed func(source string, line int64, err error)) ([]*write, Stats, error) {
	var (
		stats  Stats
		writes []*write
		seen   = map[string]bool{}
		// Only lines that mention the name can be about the object; the
		// rest are not decoded.
		needle = []byte(target.Name)
	)
	for _, src := range sources {
		err := func() error {
			r, err := src.Open()
			if err != nil {
				return err
			}
			defer r.Close()
			br := bufio.NewReaderSize(r, 1<<20)
			var line int64
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				data, err := br.ReadBytes('\n')
				if len(data) > 0 {
					line++
					stats.Lines++
					if bytes.Contains(data, needle) {
						w, err := decodeWrite(data, target)
						switch {
						case err != nil:
							stats.Malformed++
							if onMalformed != nil {
								onMalformed(src.Name, line, err)
							}
						case w == nil:
						case !seen[string(w.event.AuditID)]:
							seen[string(w.event.AuditID)] = true
							w.line = stats.Lines
							writes = append(writes, w)
						}
					}
				}
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("read %s: %w", src.Name, err)
				}
			}
		}()
		if err != nil {
			return nil, stats, err
		}
	}
	writes = ofResource(writes, target)
	succeeded := writes[:0]
	for _, w := range writes {
		if code := w.event.ResponseStatus; code != nil && (code.Code < 200 || code.Code > 299) {
			stats.Failed++
		} else {
			succeeded = append(succeeded, w)
		}
	}
	writes = succeeded
	// The log is in the order requests finished; the API server's
	// timestamps order them across rotated or merged logs.
	sort.SliceStable(writes, func(i, j int) bool {
		return writes[i].event.StageTimestamp.Before(&writes[j].event.StageTimestamp)
	})
	stats.Writes = len(writes)
	return writes, stats, nil
}

// ofResource keeps the writes to the resource the target names, by its
// plural or, where a body says the kind, by its kind: a patch body has no
// kind, but another write to the same resource names it.
func ofResource(writes []*write, target Target) []*write {
	resources := map[string]bool{}
	for _, w := range writes {
		if w.event.ObjectRef.Resource == target.Resource || strings.EqualFold(w.kind, target.Resource) {
			resources[w.event.ObjectRef.APIGroup+"/"+w.event.ObjectRef.Resource] = true
		}
	}
	kept := writes[:0]
	for _, w := range writes {
		if resources[w.event.ObjectRef.APIGroup+"/"+w.event.ObjectRef.Resource] {
			kept = append(kept, w)
		}
	}
	return kept
}

// decodeWrite decodes one audit line; it returns nil, nil for lines that
// are valid but not a completed write to an object of the target's name,
// namespace and group (ofResource picks the resource).
func decodeWrite(line []byte, target Target) (*write, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, nil
	}
	var ev auditv1.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, fmt.Errorf("not an audit event: %w", err)
	}
	if ev.Stage != auditv1.StageResponseComplete && ev.Stage != auditv1.StagePanic {
		return nil, nil
	}
	ref := ev.ObjectRef
	if ref == nil || !mutatingVerbs[ev.Verb] || !versionSubresources[ref.Subresource] || (target.Namespace != "" && ref.Namespace != target.Namespace) {
		return nil, nil
	}
	if target.Group != "" && ref.APIGroup != target.Group {
		return nil, nil
	}
	w := &write{event: ev}
	request, _ := bodyObject(ev.RequestObject)
	if response, ok := bodyObject(ev.ResponseObject); ok && isObject(response, ref) {
		w.response = response
	}
	for _, body := range []map[string]any{w.response, request} {
		if kind, _ := body["kind"].(string); kind != "" && w.kind == "" && isObject(body, ref) {
			w.kind = kind
		}
	}
	name := ref.Name
	if name == "" && w.response != nil {
		// A create with generateName: the response names the object.
		name = metadataString(w.response, "name")
	}
	if name != target.Name {
		return nil, nil
	}
	if ev.ObjectRef.Name == "" {
		ev.ObjectRef.Name = name
		w.event.ObjectRef.Name = name
	}
	if isSecret(ref) {
		redactEvent(&w.event)
		if w.response != nil {
			redactSecret(w.response)
		}
	}
	return w, nil
}

// bodyObject decodes a request or response body that is a JSON object.
func bodyObject(u *runtime.Unknown) (map[string]any, bool) {
	if u == nil {
		return nil, false
	}
	raw := bytes.TrimSpace(u.Raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, false
	}
	return obj, true
}

// isObject reports whether a body is the object itself rather than a
// Status, a Scale or DeleteOptions.
func isObject(body map[string]any, ref *auditv1.ObjectReference) bool {
	if body == nil || ref.Subresource == "scale" {
		return false
	}
	switch kind, _ := body["kind"].(string); kind {
	case "Status", "DeleteOptions":
		return false
	}
	_, hasMeta := body["metadata"].(map[string]any)
	return hasMeta
}

func metadataString(obj map[string]any, field string) string {
	meta, _ := obj["metadata"].(map[string]any)
	s, _ := meta[field].(string)
	return s
}
