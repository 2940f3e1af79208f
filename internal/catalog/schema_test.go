package catalog

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestLoadSchemasEveryRelease checks the embedded schemas against their
// catalogs: every operation that takes a body has a schema, no other does.
func TestLoadSchemasEveryRelease(t *testing.T) {
	for _, release := range Releases() {
		t.Run(release, func(t *testing.T) {
			c, err := Load(release)
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.Schemas()
			if err != nil {
				t.Fatal(err)
			}
			direct, err := LoadSchemas("v" + release + ".0")
			if err != nil || direct != s {
				t.Errorf("LoadSchemas gives %p, %v; the catalog's are %p", direct, err, s)
			}
			if s.Release != release || s.Source != c.Source || len(s.Unresolved) != 0 {
				t.Errorf("release %q source %q unresolved %v; want %q %q none", s.Release, s.Source, s.Unresolved, release, c.Source)
			}
			for _, op := range c.Operations {
				_, hasBody := s.Body(op.ID)
				// Every create, update and patch takes a body, and so do
				// delete and deletecollection (DeleteOptions). Reads,
				// watches and connect (exec, proxy, ...) never do.
				wantBody := op.Class == ClassResource && !op.Watch &&
					slices.Contains([]string{"post", "put", "patch", "delete", "deletecollection"}, op.Action)
				if hasBody != wantBody {
					t.Errorf("%s (%s %s): body schema %v, want %v", op.ID, op.Method, op.Action, hasBody, wantBody)
				}
			}
			if len(s.Bodies) < 400 {
				t.Errorf("only %d bodies", len(s.Bodies))
			}
			for id := range s.Bodies {
				if _, ok := c.Operation(id); !ok {
					t.Errorf("body schema for %s, which the catalog lacks", id)
				}
			}
			deployment := s.Type(s.Bodies["createAppsV1NamespacedDeployment"])
			if deployment.Name != "io.k8s.api.apps.v1.Deployment" || deployment.Kind != KindObject {
				t.Errorf("Deployment body is %+v", deployment)
			}
			if patch := s.Bodies["patchAppsV1NamespacedDeployment"]; patch != s.Bodies["createAppsV1NamespacedDeployment"] {
				t.Errorf("a Deployment patch applies to type %d, not the Deployment's %d", patch, s.Bodies["createAppsV1NamespacedDeployment"])
			}
			if n := s.FieldCount("createAppsV1NamespacedDeployment"); n < 1000 || n != len(s.FieldPaths("createAppsV1NamespacedDeployment")) {
				t.Errorf("FieldCount %d, %d FieldPaths", n, len(s.FieldPaths("createAppsV1NamespacedDeployment")))
			}
		})
	}
}

// TestSchemaDetails checks what the 1.37 schemas say about fields that
// patches and validation depend on.
func TestSchemaDetails(t *testing.T) {
	s, err := LoadSchemas("1.37")
	if err != nil {
		t.Fatal(err)
	}
	const deployment = "createAppsV1NamespacedDeployment"
	for _, c := range []struct {
		op, path string
		want     Type
	}{
		{deployment, "spec.template.spec.containers", Type{Kind: KindArray, ListType: "map", ListMapKeys: []string{"name"}, PatchStrategy: "merge", PatchMergeKey: "name"}},
		{deployment, "spec.template.spec.containers[].imagePullPolicy", Type{Kind: KindString, Enum: []string{"Always", "IfNotPresent", "Never"}}},
		{deployment, "spec.template.spec.containers[].ports[].protocol", Type{Kind: KindString, Enum: []string{"SCTP", "TCP", "UDP"}}},
		{deployment, "spec.template.spec.containers[].args", Type{Kind: KindArray, ListType: "atomic"}},
		{deployment, "spec.template.spec.containers[].resources.limits{}", Type{Name: "io.k8s.apimachinery.pkg.api.resource.Quantity", Kind: KindQuantity}},
		{deployment, "spec.strategy.rollingUpdate.maxSurge", Type{Name: "io.k8s.apimachinery.pkg.util.intstr.IntOrString", Kind: KindIntOrString}},
		{deployment, "spec.replicas", Type{Kind: KindInteger}},
		{deployment, "spec.paused", Type{Kind: KindBoolean}},
		{deployment, "metadata.labels", Type{Kind: KindMap}},
		{deployment, "metadata.finalizers", Type{Kind: KindArray, ListType: "set", PatchStrategy: "merge"}},
		{deployment, "metadata.managedFields[].fieldsV1", Type{Name: "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", Kind: KindAny}},
		{"createAppsV1NamespacedControllerRevision", "data", Type{Name: "io.k8s.apimachinery.pkg.runtime.RawExtension", Kind: KindAny}},
		{"createApiextensionsV1CustomResourceDefinition", "spec.versions[].subresources.status",
			Type{Name: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceSubresourceStatus", Kind: KindObject}},
		{"createApiextensionsV1CustomResourceDefinition", "spec.versions[].schema.openAPIV3Schema.default",
			Type{Name: "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON", Kind: KindAny}},
	} {
		got, ok := s.FieldType(c.op, c.path)
		if !ok {
			t.Errorf("%s %s: no such field", c.op, c.path)
			continue
		}
		g := *got
		g.Properties, g.Elem, g.index = nil, 0, nil
		if !typesEqual(g, c.want) {
			t.Errorf("%s %s = %+v, want %+v", c.op, c.path, g, c.want)
		}
	}
	// A field declaring a patch strategy on a named type gets its own copy.
	strategy, _ := s.FieldType(deployment, "spec.strategy")
	if strategy.Name != "io.k8s.api.apps.v1.DeploymentStrategy" || strategy.PatchStrategy != "retainKeys" {
		t.Errorf("spec.strategy = %+v", strategy)
	}
	if _, ok := strategy.Property("rollingUpdate"); !ok {
		t.Error("the copy of DeploymentStrategy lost its properties")
	}
}

func typesEqual(a, b Type) bool {
	return a.Name == b.Name && a.Kind == b.Kind && slices.Equal(a.Enum, b.Enum) && a.ListType == b.ListType &&
		slices.Equal(a.ListMapKeys, b.ListMapKeys) && a.PatchStrategy == b.PatchStrategy &&
		a.PatchMergeKey == b.PatchMergeKey && a.PreserveUnknownFields == b.PreserveUnknownFields &&
		slices.EqualFunc(a.Properties, b.Properties, func(p, q Property) bool {
			return p.Name == q.Name && p.Type == q.Type && p.Proto == q.Proto && slices.Equal(p.ProtoIn, q.ProtoIn)
		}) && a.Elem == b.Elem
}

func TestFieldPaths(t *testing.T) {
	s, err := LoadSchemas("1.37")
	if err != nil {
		t.Fatal(err)
	}
	const deployment = "createAppsV1NamespacedDeployment"
	paths := s.FieldPaths(deployment)
	if !slices.IsSorted(paths) || len(slices.Compact(slices.Clone(paths))) != len(paths) {
		t.Fatal("FieldPaths not sorted and unique")
	}
	for _, path := range paths {
		if !s.HasFieldPath(deployment, path) {
			t.Errorf("HasFieldPath(%s) = false for one of FieldPaths", path)
		}
	}
	for _, path := range []string{"", "spec.foo", "spec.template.spec.containers.image", "spec.template.spec.containers[]image",
		"metadata.labels{}.x", "metadata.labels[]", ".spec", "spec.", "spec..replicas", "spec.replicas.x"} {
		if s.HasFieldPath(deployment, path) {
			t.Errorf("HasFieldPath(%q) = true", path)
		}
	}
	if s.FieldPaths("readAppsV1NamespacedDeployment") != nil || s.FieldCount("readAppsV1NamespacedDeployment") != 0 {
		t.Error("an operation without a body has field paths")
	}
	// Enumeration stops at a type already on the way down: a CRD's schema
	// holds JSONSchemaProps in JSONSchemaProps.
	const crd = "createApiextensionsV1CustomResourceDefinition"
	for path, want := range map[string]bool{
		"spec.versions[].schema.openAPIV3Schema.properties":        true,
		"spec.versions[].schema.openAPIV3Schema.properties{}":      true,
		"spec.versions[].schema.openAPIV3Schema.properties{}.type": false,
		"spec.versions[].schema.openAPIV3Schema.allOf[]":           true,
		"spec.versions[].schema.openAPIV3Schema.not":               true,
		"spec.versions[].schema.openAPIV3Schema.not.type":          false,
	} {
		if got := s.HasFieldPath(crd, path); got != want {
			t.Errorf("HasFieldPath(%s) = %v, want %v", path, got, want)
		}
	}
	if typ, ok := s.FieldType(crd, "spec.versions[].schema.openAPIV3Schema.properties{}.properties{}.type"); !ok || typ.Kind != KindString {
		t.Errorf("FieldType follows recursion: %+v, %v", typ, ok)
	}
	if n := s.FieldCount(crd); n != len(s.FieldPaths(crd)) || n == 0 || n > MaxFieldPaths {
		t.Errorf("FieldCount(%s) = %d, %d paths", crd, n, len(s.FieldPaths(crd)))
	}
}

func TestSchemasEncodeDecode(t *testing.T) {
	s, err := LoadSchemas("1.37")
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := EncodeSchemas(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeSchemas(encoded)
	if err != nil {
		t.Fatal(err)
	}
	again, err := EncodeSchemas(back)
	if err != nil || string(again) != string(encoded) {
		t.Errorf("round trip changed %d bytes into %d: %v", len(encoded), len(again), err)
	}
	if _, err := DecodeSchemas([]byte("not zstd")); err == nil {
		t.Error("junk decoded")
	}
	for name, bad := range map[string]*Schemas{
		"no any type first":     {Types: []Type{{Kind: KindString}}},
		"element out of range":  {Types: []Type{{}, {Kind: KindArray, Elem: 2}}},
		"property out of range": {Types: []Type{{}, {Kind: KindObject, Properties: []Property{{Name: "a", Type: -1}}}}},
		"body out of range":     {Types: []Type{{}}, Bodies: map[string]int32{"x": 1}},
		"kind out of range":     {Types: []Type{{}, {Kind: Kind(99)}}},
	} {
		data, err := schemasCodec.Encode(struct {
			Types  []Type           `json:"types"`
			Bodies map[string]int32 `json:"bodies"`
		}{bad.Types, bad.Bodies})
		if err != nil {
			// Kind(99) cannot be written as text; write its number.
			data, err = schemasCodec.Encode(map[string]any{"types": []any{map[string]any{"kind": "any"}, map[string]any{"kind": "frob"}}})
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := DecodeSchemas(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestCatalogWithoutSchemas(t *testing.T) {
	c, err := FromOpenAPIV2([]byte(`{"swagger":"2.0","paths":{}}`), "1.37")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Schemas(); !errors.Is(err, ErrNoSchemas) {
		t.Errorf("Schemas of a catalog from a document: %v, want ErrNoSchemas", err)
	}
	s := &Schemas{}
	c.SetSchemas(s)
	if got, err := c.Schemas(); got != s || err != nil {
		t.Errorf("after SetSchemas: %p, %v", got, err)
	}
	if _, err := LoadSchemas("1.99"); !errors.Is(err, ErrUnsupportedRelease) {
		t.Errorf("LoadSchemas(1.99): %v", err)
	}
}

// TestSchemasLoader: a loader runs only when Schemas is first called, once,
// and its error is every call's.
func TestSchemasLoader(t *testing.T) {
	for _, want := range []error{nil, ErrNoSchemas} {
		c, err := FromOpenAPIV2([]byte(`{"swagger":"2.0","paths":{}}`), "1.37")
		if err != nil {
			t.Fatal(err)
		}
		s, calls := &Schemas{}, 0
		c.SetSchemasLoader(func() (*Schemas, error) {
			calls++
			if want != nil {
				return nil, want
			}
			return s, nil
		})
		if calls != 0 {
			t.Fatalf("loader called by SetSchemasLoader")
		}
		for range 2 {
			got, err := c.Schemas()
			if !errors.Is(err, want) || (want == nil && got != s) {
				t.Errorf("Schemas with loader returning %v: %p, %v", want, got, err)
			}
		}
		if calls != 1 {
			t.Errorf("loader returning %v called %d times, want once", want, calls)
		}
	}
}

// A Swagger 2.0 document with what body schemas must handle: a shared body
// parameter, a patch answered by its object, a $ref with a field-level
// extension, int-or-string and quantity both ways, free-form objects, an
// empty struct, a missing definition and a non-string enum.
const schemaDoc = `{
  "swagger": "2.0",
  "parameters": {"body-x": {"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/w.Widget"}}},
  "paths": {
    "/apis/w/v1/widgets": {
      "post": {"operationId": "createWidget", "parameters": [{"$ref": "#/parameters/body-x"}]},
      "get": {"operationId": "listWidget"}
    },
    "/apis/w/v1/widgets/{name}": {
      "parameters": [{"name": "name", "in": "path", "type": "string"}],
      "patch": {"operationId": "patchWidget",
        "parameters": [{"in": "body", "name": "body", "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}],
        "responses": {"200": {"schema": {"$ref": "#/definitions/w.Widget"}}}},
      "delete": {"operationId": "deleteWidget", "parameters": [{"in": "body", "name": "body", "schema": {"$ref": "#/definitions/w.Missing"}}]},
      "put": {"operationId": "replaceWidget", "parameters": [{"in": "body", "name": "body", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}]}
    }
  },
  "definitions": {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {"type": "object"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
    "w.Widget": {"type": "object", "properties": {
      "spec": {"$ref": "#/definitions/w.Spec", "x-kubernetes-patch-strategy": "retainKeys"},
      "plain": {"$ref": "#/definitions/w.Spec"},
      "size": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
      "port": {"type": "string", "format": "int-or-string"},
      "port3": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
      "size3": {"oneOf": [{"type": "string"}, {"type": "number"}]},
      "anything": {"type": "object", "additionalProperties": true},
      "empty": {"type": "object"},
      "kept": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
      "free": {"x-kubernetes-preserve-unknown-fields": true},
      "level": {"type": "integer", "enum": [1, 2]},
      "color": {"type": "string", "enum": ["red", "blue", "red"]},
      "items": {"type": "array", "items": {"$ref": "#/definitions/w.Spec"}, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    }},
    "w.Spec": {"type": "object", "properties": {"name": {"type": "string"}, "child": {"$ref": "#/definitions/w.Spec"}}}
  }
}`

func TestSchemasFromOpenAPIV2(t *testing.T) {
	s, err := SchemasFromOpenAPIV2([]byte(schemaDoc), "v1.37.2", "test", Enums{
		"w.Spec":   {"name": {"a", "b"}},
		"w.Widget": {"color": {"green"}, "nothing": {"x"}},
		"w.Absent": {"a": {"b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Release != "1.37" || s.Source != "test" {
		t.Errorf("release %q source %q", s.Release, s.Source)
	}
	if ids := sortedKeys(s.Bodies); !slices.Equal(ids, []string{"createWidget", "deleteWidget", "patchWidget", "replaceWidget"}) {
		t.Errorf("bodies of %v", ids)
	}
	if s.Bodies["patchWidget"] != s.Bodies["createWidget"] {
		t.Error("patchWidget does not apply to the Widget")
	}
	if !slices.Equal(s.Unresolved, []string{"w.Missing"}) || s.Bodies["deleteWidget"] != 0 {
		t.Errorf("unresolved %v, deleteWidget body %d", s.Unresolved, s.Bodies["deleteWidget"])
	}
	kinds := map[string]Kind{
		"spec": KindObject, "plain": KindObject, "size": KindQuantity, "port": KindIntOrString, "port3": KindIntOrString,
		"size3": KindQuantity, "anything": KindMap, "empty": KindObject, "kept": KindObject, "free": KindAny,
		"level": KindInteger, "color": KindString, "items": KindArray, "spec.child.child.name": KindString,
	}
	for path, want := range kinds {
		typ, ok := s.FieldType("createWidget", path)
		if !ok || typ.Kind != want {
			t.Errorf("%s: %+v, %v; want kind %s", path, typ, ok, want)
		}
	}
	get := func(path string) *Type {
		typ, _ := s.FieldType("createWidget", path)
		return typ
	}
	if spec, plain := get("spec"), get("plain"); spec.PatchStrategy != "retainKeys" || plain.PatchStrategy != "" || len(spec.Properties) != 2 {
		t.Errorf("spec %+v, plain %+v", spec, plain)
	}
	if get("kept").PreserveUnknownFields != true || get("empty").PreserveUnknownFields || len(get("empty").Properties) != 0 {
		t.Error("kept/empty objects wrong")
	}
	if e := get("color").Enum; !slices.Equal(e, []string{"blue", "red"}) {
		t.Errorf("color enum %v: the document's own enum wins, sorted, without repeats", e)
	}
	if get("level").Enum != nil || !slices.Equal(get("spec.name").Enum, []string{"a", "b"}) {
		t.Errorf("level enum %v, spec.name enum %v", get("level").Enum, get("spec.name").Enum)
	}
	if items := get("items"); items.ListType != "map" || !slices.Equal(items.ListMapKeys, []string{"name"}) {
		t.Errorf("items %+v", items)
	}
	if inline := s.Type(s.Bodies["replaceWidget"]); inline.Name != "" || inline.Kind != KindObject || len(inline.Properties) != 1 {
		t.Errorf("inline body %+v", s.Type(s.Bodies["replaceWidget"]))
	}
	if _, err := SchemasFromOpenAPIV2([]byte(`{"swagger":"3.0"}`), "1.37", "", nil); err == nil {
		t.Error("a non-2.0 document was read")
	}
}

// BenchmarkLoadSchemas measures what LoadSchemas costs the first time a
// release's schemas are asked for: decompressing, decoding and indexing.
func BenchmarkLoadSchemas(b *testing.B) {
	for _, release := range Releases() {
		compressed, err := embedded.ReadFile(path.Join(schemasDir, release+dataSuffix))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(release, func(b *testing.B) {
			retained := retainedSchemaBytes(b, release)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := loadSchemasUncached(release); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(compressed)), "embedded-bytes")
			b.ReportMetric(float64(retained), "retained-bytes")
		})
	}
}

// retainedSchemaBytes measures the heap loaded schemas keep alive.
func retainedSchemaBytes(b *testing.B, release string) uint64 {
	if _, err := loadSchemasUncached(release); err != nil { // warm up the shared decoder
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := loadSchemasUncached(release)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

// TestLoadLeavesSchemas checks, in a process of its own, that loading a
// catalog and matching against it decodes no schemas: the sidecar pays for
// them only when it records bodies.
func TestLoadLeavesSchemas(t *testing.T) {
	if os.Getenv("CATALOG_SCHEMAS_CHILD") == "1" {
		c, err := Load("1.37")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Operation("createAppsV1NamespacedDeployment"); !ok {
			t.Fatal("no createAppsV1NamespacedDeployment")
		}
		loaded := 0
		schemaCache.Range(func(any, any) bool { loaded++; return true })
		fmt.Printf("schemas loaded: %d\n", loaded)
		if _, err := c.Schemas(); err != nil {
			t.Fatal(err)
		}
		schemaCache.Range(func(any, any) bool { loaded++; return true })
		fmt.Printf("schemas loaded after Schemas(): %d\n", loaded)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadLeavesSchemas$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CATALOG_SCHEMAS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "schemas loaded: 0\n") || !strings.Contains(string(out), "schemas loaded after Schemas(): 1\n") {
		t.Errorf("child output:\n%s", out)
	}
}
