package provenance

import (
	"bytes"
	"encoding/json"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Redacted replaces each value of a Secret's data and stringData, in
// objects, patches and diffs alike. Secret data is redacted as each event
// is decoded, before anything is kept.
const Redacted = "<redacted>"

func isSecret(ref *auditv1.ObjectReference) bool {
	return ref.APIGroup == "" && ref.Resource == "secrets"
}

// redactEvent redacts the request and response bodies of an event about a
// Secret; a body it cannot parse as JSON is dropped.
func redactEvent(ev *auditv1.Event) {
	for _, body := range []*runtime.Unknown{ev.RequestObject, ev.ResponseObject} {
		if body != nil {
			body.Raw = redactBody(body.Raw)
		}
	}
}

// redactBody redacts a JSON object (create, update, merge and strategic
// merge patches, apply) or a JSON Patch array.
func redactBody(raw []byte) []byte {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '{':
		var obj map[string]any
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		redactSecret(obj)
		out, _ := json.Marshal(obj)
		return out
	case len(raw) > 0 && raw[0] == '[':
		var ops []map[string]any
		if json.Unmarshal(raw, &ops) != nil {
			return nil
		}
		for _, op := range ops {
			for _, field := range []string{"path", "from"} {
				path, _ := op[field].(string)
				if path == "/data" || path == "/stringData" {
					if m, ok := op["value"].(map[string]any); ok {
						redactValues(m)
					}
				} else if strings.HasPrefix(path, "/data/") || strings.HasPrefix(path, "/stringData/") {
					if _, ok := op["value"]; ok {
						op["value"] = Redacted
					}
				}
			}
		}
		out, _ := json.Marshal(ops)
		return out
	}
	return nil
}

// redactSecret replaces every value of data and stringData.
func redactSecret(obj map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		if m, ok := obj[field].(map[string]any); ok {
			redactValues(m)
		}
	}
}

func redactValues(m map[string]any) {
	for k := range m {
		m[k] = Redacted
	}
}
