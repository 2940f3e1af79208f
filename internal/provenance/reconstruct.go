package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/scheme"
)

// apply works out the object after a write from its request body, when the
// log has no response body (Request level): a create or update's body is
// the object; a patch is applied to the previous version.
func apply(current map[string]any, w *write, kind string) (map[string]any, Source, string) {
	ev := &w.event
	if ev.Verb == "delete" {
		return nil, Deleted, ""
	}
	if ev.RequestObject == nil || len(bytes.TrimSpace(ev.RequestObject.Raw)) == 0 {
		return nil, Unknown, "the log has no body for this write"
	}
	raw := bytes.TrimSpace(ev.RequestObject.Raw)
	sub := ev.ObjectRef.Subresource
	if ev.Verb == "create" || (ev.Verb == "update" && sub == "") {
		obj, ok := bodyObject(ev.RequestObject)
		if !ok {
			return nil, Unknown, "the request body is not a JSON object"
		}
		return obj, FromRequest, ""
	}
	if current == nil {
		return nil, Unknown, "no earlier version to apply the " + ev.Verb + " to"
	}
	switch sub {
	case "scale":
		return applyScale(current, ev.Verb, raw)
	case "status":
		if ev.Verb == "update" {
			obj, ok := bodyObject(ev.RequestObject)
			if !ok {
				return nil, Unknown, "the request body is not a JSON object"
			}
			// Writes to status change only status.
			next := deepCopy(current)
			next["status"] = obj["status"]
			return next, Reconstructed, ""
		}
		patched, note, err := applyPatch(current, raw, kind, ev.ObjectRef.APIGroup, ev.ObjectRef.APIVersion, isApply(ev.RequestURI, w))
		if err != nil {
			return nil, Unknown, err.Error()
		}
		next := deepCopy(current)
		next["status"] = patched["status"]
		return next, Reconstructed, note
	}
	patched, note, err := applyPatch(current, raw, kind, ev.ObjectRef.APIGroup, ev.ObjectRef.APIVersion, isApply(ev.RequestURI, w))
	if err != nil {
		return nil, Unknown, err.Error()
	}
	return patched, Reconstructed, note
}

// applyPatch applies a patch body to an object. The audit event does not
// record the patch type: a JSON array is a JSON Patch; an apply is merged
// as a merge patch (which keeps fields the applier stopped setting, where
// the API server would remove them); other patches are strategic merge
// patches for the built-in kinds client-go knows and merge patches for the
// rest (custom resources take no strategic merge patch).
func applyPatch(current map[string]any, patch []byte, kind, group, version string, isApply bool) (map[string]any, string, error) {
	doc, err := json.Marshal(current)
	if err != nil {
		return nil, "", err
	}
	var (
		out  []byte
		note string
	)
	switch {
	case patch[0] == '[':
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, "", fmt.Errorf("not a JSON patch: %w", err)
		}
		out, err = p.Apply(doc)
		if err != nil {
			return nil, "", fmt.Errorf("apply JSON patch: %w", err)
		}
	case isApply:
		out, err = jsonpatch.MergePatch(doc, patch)
		note = "server-side apply approximated as a merge patch: fields the applier no longer sets are kept"
	default:
		if dataStruct, ok := builtIn(group, version, kind); ok {
			var p map[string]any
			if err := json.Unmarshal(patch, &p); err != nil {
				return nil, "", fmt.Errorf("not a JSON patch object: %w", err)
			}
			// StrategicMergeMapPatch changes the map it is given.
			merged, err := strategicpatch.StrategicMergeMapPatch(deepCopy(current), p, dataStruct)
			if err != nil {
				return nil, "", fmt.Errorf("apply strategic merge patch: %w", err)
			}
			return merged, "the audit log does not say the patch type: applied as a strategic merge patch", nil
		}
		out, err = jsonpatch.MergePatch(doc, patch)
	}
	if err != nil {
		return nil, "", fmt.Errorf("apply patch: %w", err)
	}
	var next map[string]any
	if err := json.Unmarshal(out, &next); err != nil {
		return nil, "", err
	}
	return next, note, nil
}

// applyScale sets spec.replicas from a write to the scale subresource.
func applyScale(current map[string]any, verb string, body []byte) (map[string]any, Source, string) {
	spec, _ := current["spec"].(map[string]any)
	scale := map[string]any{"spec": map[string]any{"replicas": spec["replicas"]}}
	var next map[string]any
	if verb == "update" {
		if err := json.Unmarshal(body, &next); err != nil {
			return nil, Unknown, "the scale body is not a JSON object"
		}
	} else {
		patched, _, err := applyPatch(scale, body, "Scale", "autoscaling", "v1", false)
		if err != nil {
			return nil, Unknown, err.Error()
		}
		next = patched
	}
	nextSpec, _ := next["spec"].(map[string]any)
	out := deepCopy(current)
	outSpec, _ := out["spec"].(map[string]any)
	if outSpec == nil {
		outSpec = map[string]any{}
		out["spec"] = outSpec
	}
	outSpec["replicas"] = nextSpec["replicas"]
	return out, Reconstructed, "the scale subresource answers with a Scale: spec.replicas set on the previous version (metadata.generation not advanced)"
}

// builtIn returns client-go's Go type for a built-in kind, which carries the
// strategic merge patch keys.
func builtIn(group, version, kind string) (any, bool) {
	if kind == "" || version == "" {
		return nil, false
	}
	obj, err := scheme.Scheme.New(schema.GroupVersionKind{Group: group, Version: version, Kind: kind})
	if err != nil {
		return nil, false
	}
	return obj, true
}

func deepCopy(obj map[string]any) map[string]any {
	data, _ := json.Marshal(obj)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return out
}
