package proxy

import (
	"bytes"
	"encoding/json"
	"strings"
)

// redactedValue replaces each value of a Secret's data and stringData.
const redactedValue = "<redacted>"

// bodyForEvent returns the request body an event may carry. Bodies sent to
// Secret paths keep their shape but lose their data; a Secret body that
// cannot be redacted (YAML, protobuf, CBOR, or JSON cut short by the cap) is
// dropped entirely.
func bodyForEvent(path string, body []byte, truncated bool) []byte {
	if len(body) == 0 {
		return nil
	}
	if !isSecretPath(path) {
		return bytes.Clone(body)
	}
	if truncated {
		return nil
	}
	return RedactSecretBody(body)
}

// isSecretPath reports whether a request path addresses the core secrets
// resource: /api/v1/secrets, /api/v1/namespaces/{ns}/secrets[/{name}...],
// and the same under the deprecated /api/v1/watch/ prefix. A namespace that
// happens to be called "secrets" does not match.
func isSecretPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/api/")
	if !ok {
		return false
	}
	// Empty segments ("//") are skipped, in case a server cleans them.
	segments := strings.FieldsFunc(rest, func(r rune) bool { return r == '/' })
	if len(segments) == 0 {
		return false
	}
	segments = segments[1:] // the version
	if len(segments) > 0 && segments[0] == "watch" {
		segments = segments[1:]
	}
	if len(segments) >= 3 && segments[0] == "namespaces" {
		segments = segments[2:]
	}
	return len(segments) > 0 && segments[0] == "secrets"
}

// RedactSecretBody returns a JSON request body for a Secret with every value
// of data and stringData replaced by "<redacted>". It understands whole
// objects (create, update, merge and strategic-merge patches, JSON apply)
// and JSON Patch arrays (values of operations on /data and /stringData).
// Anything it cannot parse as JSON, it drops (returns nil): YAML apply
// patches, protobuf and CBOR bodies never reach an event.
func RedactSecretBody(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep numbers exactly as sent
	var doc any
	if err := dec.Decode(&doc); err != nil || dec.More() {
		return nil
	}
	switch v := doc.(type) {
	case map[string]any:
		redactSecretObject(v)
	case []any:
		redactJSONPatch(v)
	default:
		return nil
	}
	// Without HTML escaping, the marker reads "<redacted>", not "\u003c".
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

func redactSecretObject(obj map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		value, ok := obj[field]
		if !ok || value == nil {
			continue
		}
		entries, isMap := value.(map[string]any)
		if !isMap {
			obj[field] = redactedValue
			continue
		}
		for key := range entries {
			entries[key] = redactedValue
		}
	}
}

// redactJSONPatch blanks the value of every operation touching data or
// stringData (including "/data" as a whole and "/" for the whole object).
func redactJSONPatch(ops []any) {
	for _, item := range ops {
		op, ok := item.(map[string]any)
		if !ok {
			continue
		}
		value, hasValue := op["value"]
		if !hasValue {
			continue
		}
		path, _ := op["path"].(string)
		switch {
		case path == "" || path == "/":
			if obj, ok := value.(map[string]any); ok {
				redactSecretObject(obj)
			} else {
				op["value"] = redactedValue
			}
		case path == "/data" || path == "/stringData":
			if obj, ok := value.(map[string]any); ok {
				for key := range obj {
					obj[key] = redactedValue
				}
			} else if value != nil {
				op["value"] = redactedValue
			}
		case strings.HasPrefix(path, "/data/") || strings.HasPrefix(path, "/stringData/"):
			op["value"] = redactedValue
		}
	}
}
