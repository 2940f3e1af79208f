package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// gizmoCRD is the custom resource of TestAuditBodiesMatchProxy: namespaced,
// with a structural schema (typed fields, an enum, a list of objects keyed
// by name, a map of strings) and no defaults, so that the API server's
// requestObject of a create or update is what was sent, pruned.
const gizmoCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: gizmos
    singular: gizmo
    kind: Gizmo
    listKind: GizmoList
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: string
                enum: [small, medium, large]
              replicas:
                type: integer
              enabled:
                type: boolean
              parts:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name:
                      type: string
                    count:
                      type: integer
              labels:
                type: object
                additionalProperties:
                  type: string
`

// gizmoSpec sets every field of the Gizmo's spec.
const gizmoSpec = `  size: small
  replicas: 1
  enabled: true
  parts:
  - name: p1
    count: 1
  labels:
    a: b
`

// gizmoPaths are the paths a Gizmo manifest with gizmoSpec sets, with the
// namespace kubectl writes into it.
var gizmoPaths = []string{
	"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace",
	"spec", "spec.size", "spec.replicas", "spec.enabled",
	"spec.parts", "spec.parts[]", "spec.parts[].name", "spec.parts[].count",
	"spec.labels", "spec.labels{}",
}

// gizmoSteps write Gizmos every way kubectl can. Client-side apply patches
// a custom resource with a JSON merge patch (kubectl has no strategic merge
// metadata for it), and the API server refuses a strategic merge patch of
// one before reading the body.
func gizmoSteps(t *testing.T) []bodyStep {
	gizmo := func(name, extra, spec string) string {
		return writeManifest(t, name+".yaml", "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: "+name+"\n"+extra+"spec:\n"+spec)
	}
	const (
		create  = "createExampleComV1NamespacedGizmo"
		patch   = "patchExampleComV1NamespacedGizmo"
		replace = "replaceExampleComV1NamespacedGizmo"
	)
	return []bodyStep{
		{name: "create Gizmo", args: []string{"create", "-f", gizmo("g1", "", gizmoSpec)},
			want: map[string]wantFields{create: {bodies: 1, set: gizmoPaths}}},
		{name: "apply Gizmo client-side", args: []string{"apply", "-f", gizmo("g2", "", gizmoSpec)},
			want: map[string]wantFields{create: {bodies: 1, set: append(slices.Clone(gizmoPaths),
				"metadata.annotations", "metadata.annotations{}")}}},
		{name: "apply Gizmo client-side again", args: []string{"apply", "-f", gizmo("g2", "",
			"  size: small\n  replicas: 2\n  enabled: true\n  parts:\n  - name: p1\n    count: 1\n  labels:\n    a: b\n    c: d\n")},
			want: map[string]wantFields{patch: {bodies: 1, set: []string{
				"metadata", "metadata.annotations", "metadata.annotations{}",
				"spec", "spec.replicas", "spec.labels", "spec.labels{}"}}}},
		{name: "apply Gizmo server-side", args: []string{"apply", "--server-side", "-f", gizmo("g3", "", gizmoSpec)},
			want: map[string]wantFields{patch: {bodies: 1, set: gizmoPaths}}},
		{name: "patch Gizmo merge", args: []string{"patch", "gizmo", "g1", "--type=merge",
			"-p", `{"spec":{"replicas":3,"labels":{"a":null,"b":"c"}},"metadata":{"annotations":{"x":"y"}}}`},
			want: map[string]wantFields{patch: {bodies: 1, set: []string{
				"metadata", "metadata.annotations", "metadata.annotations{}",
				"spec", "spec.replicas", "spec.labels", "spec.labels{}"}}}},
		{name: "patch Gizmo json", args: []string{"patch", "gizmo", "g1", "--type=json",
			"-p", `[{"op":"replace","path":"/spec/size","value":"large"},{"op":"add","path":"/spec/parts/-","value":{"name":"p2","count":2}}]`},
			want: map[string]wantFields{patch: {bodies: 1, set: []string{
				"spec", "spec.size", "spec.parts", "spec.parts[]", "spec.parts[].name", "spec.parts[].count"}}}},
		// 415 Unsupported Media Type: the proxy reads the body, the audit log
		// has none. No other patch of a Gizmo sets metadata.labels, so the
		// patch operation's field sets tell whether the log has this one.
		{name: "patch Gizmo strategic", wantExit: 1, unlogged: true, args: []string{"patch", "gizmo", "g1", "--type=strategic",
			"-p", `{"metadata":{"labels":{"s":"t"}}}`},
			want: map[string]wantFields{patch: {bodies: 1, set: []string{"metadata", "metadata.labels", "metadata.labels{}"}}}},
		{name: "replace Gizmo", args: []string{"replace", "-f", gizmo("g1", "", gizmoSpec)},
			want: map[string]wantFields{replace: {bodies: 1, set: append(slices.Clone(gizmoPaths), "metadata.resourceVersion")}}},
		// The API server prunes unknown fields of a custom resource when it
		// decodes it: the requestObject it logs has none.
		{name: "Gizmo unknown field", args: []string{"create", "--validate=false", "-f",
			gizmo("g-unknown", "  colour: blue\nextra: 1\n", gizmoSpec+"  colour: blue\n")},
			want: map[string]wantFields{create: {bodies: 1, set: gizmoPaths,
				unknown: []string{"extra", "metadata.colour", "spec.colour"}}}},
		// A custom resource decodes whatever its values' types; the schema
		// check after decoding refuses this one (422), so the audit log has
		// its requestObject, the ill-typed value included.
		{name: "Gizmo wrong type", wantExit: 1, args: []string{"create", "--validate=false", "-f",
			gizmo("g-wrong", "", "  size: small\n  replicas: three\n")},
			want: map[string]wantFields{create: {bodies: 1,
				set:      []string{"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace", "spec", "spec.size", "spec.replicas"},
				illTyped: []string{"spec.replicas"}}}},
		{name: "patch Gizmo unknown field", args: []string{"patch", "gizmo", "g1", "--type=merge",
			"-p", `{"spec":{"colour":"blue"},"extra":1}`},
			want: map[string]wantFields{patch: {bodies: 1, set: []string{"spec"}, unknown: []string{"extra", "spec.colour"}}}},
		{name: "patch Gizmo wrong type", wantExit: 1, args: []string{"patch", "gizmo", "g1", "--type=merge",
			"-p", `{"spec":{"replicas":"three"}}`},
			want: map[string]wantFields{patch: {bodies: 1, set: []string{"spec", "spec.replicas"}, illTyped: []string{"spec.replicas"}}}},
	}
}

// waitForClusterSchema waits until the live cluster's catalog, as kubectl
// snoop record and coverage read it, has operation id with a body schema
// knowing path: the API server publishes a CRD's OpenAPI v3 document a
// while after the CRD is established.
func waitForClusterSchema(t *testing.T, cfg *rest.Config, id, path string) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		cat, err := loadReleaseCatalog(ctx, "cluster", cfg)
		if err != nil {
			last = err
			return false, nil
		}
		if _, ok := cat.Operation(id); !ok {
			return false, nil
		}
		s, err := cat.Schemas()
		if err != nil {
			return false, err
		}
		return s.HasFieldPath(id, path), nil
	})
	if err != nil {
		t.Fatalf("%s with %s never appeared in the cluster's OpenAPI v3 documents: %v (last error: %v)", id, path, err, last)
	}
}
