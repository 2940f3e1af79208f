package catalog

import (
	"sort"
	"strings"
)

// RawOperation is one operation as read from an OpenAPI document, before
// any derivation. FromOpenAPIV2 and the readers of other document formats
// (package openapiv3) reduce their input to this shape so that the
// derivation rules exist exactly once.
type RawOperation struct {
	ID          string
	Method      string // lower case, as the document's path-item key
	Path        string
	Description string
	Tags        []string
	Deprecated  bool
	Action      string // x-kubernetes-action
	Kind        string // the kind of x-kubernetes-group-version-kind
}

// VersionLevel parses a Kubernetes API version strictly: "v1", "v2" are
// stable, "vNbetaM" beta and "vNalphaM" alpha, with N and M positive integers
// without leading zeros. ok is false for anything else ("v0", "v1beta",
// "2024-01-01", "v1rc1", ...), which Kubernetes itself sorts below every
// alpha version.
func VersionLevel(version string) (level Level, ok bool) {
	rest, found := strings.CutPrefix(version, "v")
	if !found {
		return "", false
	}
	major, rest := leadingNumber(rest)
	if major == "" {
		return "", false
	}
	if rest == "" {
		return Stable, true
	}
	for _, candidate := range []Level{Beta, Alpha} {
		if tail, found := strings.CutPrefix(rest, string(candidate)); found {
			minor, after := leadingNumber(tail)
			if minor != "" && after == "" {
				return candidate, true
			}
			return "", false
		}
	}
	return "", false
}

// leadingNumber splits s into a leading positive decimal number without
// leading zeros and the remainder; number is "" when s has none.
func leadingNumber(s string) (number, rest string) {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == 0 || s[0] == '0' {
		return "", s
	}
	return s[:end], s[end:]
}

// levelRank orders levels from least to most stable.
func levelRank(level Level) int {
	switch level {
	case Stable:
		return 3
	case Beta:
		return 2
	case Alpha:
		return 1
	}
	return 0
}

// versionLevelOrAlpha is VersionLevel for use in the catalog: a version that
// does not parse (only possible for custom resources or aggregated APIs) is
// treated as alpha, the least stable level, so it can never count as stable.
func versionLevelOrAlpha(version string) Level {
	if level, ok := VersionLevel(version); ok {
		return level
	}
	return Alpha
}

// pathShape is what the path template alone tells about an operation.
type pathShape struct {
	Group, Version string
	// GroupDiscovery is set for /apis/<group>/ whose level depends on the
	// versions the group serves, not on the path itself.
	GroupDiscovery bool
	// ResourcePath is set when the path names a resource (so the operation is
	// neither discovery nor a non-resource URL).
	ResourcePath          bool
	Resource, Subresource string
	Namespaced            bool
	// LegacyWatch is set for /watch/ paths.
	LegacyWatch bool
}

// shapeOf splits a path template into group, version, resource and
// subresource. Swagger writes discovery paths with a trailing slash
// ("/apis/apps/", "/apis/apps/v1/", "/api/v1/"); trailing slashes are
// ignored here.
//
//	/api/v1/namespaces/{namespace}/pods/{name}/exec -> "" v1 pods exec, namespaced
//	/api/v1/namespaces/{name}/finalize              -> "" v1 namespaces finalize
//	/apis/apps/v1/watch/namespaces/{namespace}/deployments -> apps v1 deployments, legacy watch
//	/api/v1/nodes/{name}/proxy/{path}               -> "" v1 nodes proxy
//	/apis/apps/                                     -> group discovery of apps
//	/version/, /openapi/v2, /.well-known/...        -> non-resource URL
func shapeOf(path string) pathShape {
	segments := strings.Split(strings.Trim(path, "/"), "/")
	var shape pathShape
	var rest []string
	switch {
	case segments[0] == "api" && len(segments) >= 2:
		shape.Version, rest = segments[1], segments[2:]
	case segments[0] == "apis" && len(segments) == 2:
		shape.Group, shape.GroupDiscovery = segments[1], true
		return shape
	case segments[0] == "apis" && len(segments) >= 3:
		shape.Group, shape.Version, rest = segments[1], segments[2], segments[3:]
	default:
		// "/api/", "/apis/" and non-resource URLs carry no group-version.
		return shape
	}
	if len(rest) > 0 && rest[0] == "watch" {
		shape.LegacyWatch, rest = true, rest[1:]
	}
	// Namespaced resources live under namespaces/{namespace}/<resource>; the
	// namespace object itself is namespaces/{name} and keeps "namespaces" as
	// its resource (namespaces/{name}/status, namespaces/{name}/finalize).
	if len(rest) > 2 && rest[0] == "namespaces" && rest[1] == "{namespace}" {
		shape.Namespaced, rest = true, rest[2:]
	}
	if len(rest) == 0 {
		return shape // group-version discovery: /api/v1/, /apis/apps/v1/
	}
	shape.ResourcePath, shape.Resource = true, rest[0]
	// <resource>/{name}/<subresource>[/{path}]; the proxy tail {path} is
	// part of the proxy subresource, not a further segment.
	if len(rest) >= 3 && isParameter(rest[1]) {
		shape.Subresource = rest[2]
	}
	return shape
}

func isParameter(segment string) bool {
	return strings.HasPrefix(segment, "{") && strings.HasSuffix(segment, "}")
}

// bestGroupLevels returns, per API group, the most stable level among the
// versions the group serves, judged from the /apis/<group>/<version>/...
// paths present. This is the level of the group's discovery endpoint.
func bestGroupLevels(raws []RawOperation) map[string]Level {
	best := map[string]Level{}
	for _, raw := range raws {
		shape := shapeOf(raw.Path)
		if shape.Group == "" || shape.Version == "" {
			continue
		}
		level := versionLevelOrAlpha(shape.Version)
		if levelRank(level) > levelRank(best[shape.Group]) {
			best[shape.Group] = level
		}
	}
	return best
}

// isDeprecated reports what the document says about deprecation: the OpenAPI
// deprecated flag or, as Kubernetes does it and APISnoop reads it, the word
// "deprecated" in the description. In every release 1.31-1.37 the only
// operations so marked are the legacy watch operations, whose description
// reads "watch changes to ... deprecated: use the 'watch' parameter with a
// list operation instead".
func isDeprecated(raw RawOperation) bool {
	return raw.Deprecated || strings.Contains(strings.ToLower(raw.Description), "deprecated")
}

// isWatch reports whether the operation is one of the separate watch
// operations in the document (watchCoreV1NamespacedPod,
// watchCoreV1NamespacedPodList, ...). Kubernetes serves a watch as a list
// with ?watch=true; the document nevertheless keeps these operations for the
// legacy /watch/ paths. The catalog keeps them as the document has them, so
// traffic on /watch/ paths can be attributed, while list?watch=true requests
// belong to the list operation. They are never eligible.
func isWatch(action, id string, shape pathShape) bool {
	return action == "watch" || action == "watchlist" || shape.LegacyWatch || strings.HasPrefix(id, "watch")
}

// build applies the derivation rules to raw operations. lists may be empty,
// in which case only the rule-based eligibility applies.
func build(raws []RawOperation, release string, lists ConformanceLists) *Catalog {
	groupLevels := bestGroupLevels(raws)
	operations := make([]Operation, 0, len(raws))
	for _, raw := range raws {
		shape := shapeOf(raw.Path)
		op := Operation{
			ID:          raw.ID,
			Method:      strings.ToUpper(raw.Method),
			Path:        raw.Path,
			Group:       shape.Group,
			Version:     shape.Version,
			Resource:    shape.Resource,
			Subresource: shape.Subresource,
			Action:      raw.Action,
			Kind:        raw.Kind,
			Deprecated:  isDeprecated(raw),
			Namespaced:  shape.Namespaced,
			Watch:       isWatch(raw.Action, raw.ID, shape),
			Category:    category(raw.Tags),
		}
		switch {
		case shape.GroupDiscovery:
			op.Class = ClassDiscovery
			op.Level = groupLevels[shape.Group]
			if op.Level == "" {
				op.Level = Stable // a group with no versioned paths; nothing better to say
			}
		case shape.Version != "":
			op.Level = versionLevelOrAlpha(shape.Version)
			op.Class = ClassDiscovery // /api/v1/, /apis/<group>/<version>/
			if shape.ResourcePath {
				op.Class = ClassResource
			}
		default:
			// "/api/", "/apis/" and non-resource URLs (/version/, /openapi/v2,
			// /.well-known/openid-configuration/, /openid/v1/jwks/, /logs/):
			// no API version, so stable.
			op.Level = Stable
			op.Class = ClassNonResource
			if root := strings.Trim(raw.Path, "/"); root == "api" || root == "apis" {
				op.Class = ClassDiscovery
			}
		}
		operations = append(operations, op)
	}
	sort.Slice(operations, func(i, j int) bool { return operations[i].ID < operations[j].ID })
	c := &Catalog{Release: release, Operations: operations}
	c.ApplyConformanceLists(lists)
	return c
}

// category is APISnoop's category: the first tag up to its first underscore
// ("core_v1" -> "core", "apps_v1" -> "apps", "wellKnown" -> "wellKnown").
func category(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	name, _, _ := strings.Cut(tags[0], "_")
	return name
}
