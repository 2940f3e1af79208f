package coverage

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

const (
	createDeployment = "createAppsV1NamespacedDeployment"
	patchDeployment  = "patchAppsV1NamespacedDeployment"
	createConfigMap  = "createCoreV1NamespacedConfigMap"
)

// walked are real walks of request bodies against the 1.37 schemas.
func walked(t *testing.T) []struct {
	op string
	r  fields.Result
} {
	t.Helper()
	s, err := catalog.LoadSchemas("1.37")
	if err != nil {
		t.Fatal(err)
	}
	w := fields.NewWalker(s)
	var out []struct {
		op string
		r  fields.Result
	}
	for _, b := range []struct {
		op   string
		kind fields.BodyKind
		body string
	}{
		{createDeployment, fields.Object, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},
			"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
			"spec":{"containers":[{"name":"web","image":"nginx","imagePullPolicy":"Sometimes","colour":"red"}]}}}}`},
		{createDeployment, fields.Object, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api"},"spec":{"replicas":"3"}}`},
		{patchDeployment, fields.StrategicMergePatch, `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}`},
		{patchDeployment, fields.JSONPatch, `[{"op":"replace","path":"/spec/replicas","value":5}]`},
		{createConfigMap, fields.Object, `{"metadata":{"name":"c"},"data":{"a":"b"}}`},
		{"createApiextensionsV1CustomResourceDefinition", fields.Object,
			`{"spec":{"versions":[{"schema":{"openAPIV3Schema":{"properties":{"a":{"properties":{"b":{"type":"string"}}}}}}}]}}`},
	} {
		r, err := w.Walk(b.op, b.kind, []byte(b.body))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, struct {
			op string
			r  fields.Result
		}{b.op, r})
	}
	return out
}

func TestFieldsMergeIsOrderFree(t *testing.T) {
	bodies := walked(t)
	var whole Delta
	for _, b := range bodies {
		whole.AddFields(b.op, b.r, 2)
	}
	whole.AddMalformedBodies(createConfigMap, 1)
	parts := make([]Delta, 3)
	for i, b := range bodies {
		parts[i%3].AddFields(b.op, b.r, 2)
	}
	parts[1].AddMalformedBodies(createConfigMap, 1)
	var forward, backward Delta
	for i := range parts {
		forward.Merge(&parts[i])
		backward.Merge(&parts[len(parts)-1-i])
	}
	for name, got := range map[string]*Delta{"forward": &forward, "backward": &backward} {
		if !reflect.DeepEqual(got, &whole) {
			t.Errorf("%s merge differs from adding every body:\n got %s\nwant %s", name, mustJSON(t, got), mustJSON(t, &whole))
		}
	}
	fc := whole.Fields[createDeployment]
	if fc.Bodies != 4 || fc.Set["metadata.name"] != 4 || fc.Set["spec.template.spec.containers[].image"] != 2 ||
		fc.Unknown["spec.template.spec.containers[].colour"] != 2 ||
		!reflect.DeepEqual(fc.IllTyped, map[string]int64{"spec.replicas": 2, "spec.template.spec.containers[].imagePullPolicy": 2}) {
		t.Errorf("Deployment create fields = %+v", fc)
	}
	if cm := whole.Fields[createConfigMap]; cm.Bodies != 3 || cm.Malformed != 1 || cm.Set["data{}"] != 2 {
		t.Errorf("ConfigMap create fields = %+v", cm)
	}
	whole.AddFields("", bodies[0].r, 1)
	whole.AddMalformedBodies("", 1)
	whole.AddFields(createConfigMap, bodies[0].r, 0)
	if _, ok := whole.Fields[""]; ok || whole.Fields[createConfigMap].Bodies != 3 {
		t.Error("bodies of unknown requests, or zero bodies, were counted")
	}
}

func TestFieldsEncodeRoundTrip(t *testing.T) {
	var d Delta
	for _, h := range sampleHits() {
		d.Add(h)
	}
	for _, b := range walked(t) {
		d.AddFields(b.op, b.r, 3)
	}
	data, err := Encode(&d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	// Equal to the last count, the paths held included.
	if !reflect.DeepEqual(got, &d) {
		t.Errorf("round trip differs:\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, &d))
	}
}

// oldDelta is a delta as serialised before deltas held field counts.
const oldDelta = `{"requests":3,"failedRequests":1,"unknownRequests":1,
	"operations":{"listCoreV1NamespacedPod":{"requests":2,"byVerb":{"list":2},"byStatus":{"2xx":2}}},
	"unknown":{"GET /healthz":{"requests":1,"byVerb":{"get":1},"byStatus":{"5xx":1}}},
	"clients":[{"user":"admin","userAgent":"kubectl/v1.33.0","requests":3,"failed":1,"unknown":1,"operations":{"listCoreV1NamespacedPod":2}}]}`

func TestOldDeltaIsReadable(t *testing.T) {
	var old Delta
	if err := json.Unmarshal([]byte(oldDelta), &old); err != nil {
		t.Fatal(err)
	}
	if old.Requests != 3 || old.Operations["listCoreV1NamespacedPod"].Requests != 2 || len(old.Clients) != 1 || old.Fields != nil {
		t.Errorf("old delta read as %s", mustJSON(t, &old))
	}
	// It merges with a new one, and its report has no field coverage.
	var d Delta
	for _, b := range walked(t) {
		d.AddFields(b.op, b.r, 1)
	}
	old.Merge(&d)
	if old.Fields[createDeployment].Bodies != 2 {
		t.Errorf("merged fields %+v", old.Fields[createDeployment])
	}
	var plain Delta
	if err := json.Unmarshal([]byte(oldDelta), &plain); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	r := NewReport(cat, &plain)
	if r.Summary.Fields != nil {
		t.Errorf("a delta without bodies reports field coverage: %+v", r.Summary.Fields)
	}
	for _, op := range r.Operations {
		if op.Fields != nil {
			t.Fatalf("%s has field coverage without bodies", op.ID)
		}
	}
}

func TestFieldBounds(t *testing.T) {
	var d Delta
	var unknown []string
	for i := range MaxUnknownFields + 5 {
		unknown = append(unknown, fmt.Sprintf("spec.x%03d", i))
	}
	d.AddFields(createConfigMap, fields.Result{Set: []string{"data"}, Unknown: unknown, IllTyped: unknown}, 2)
	fc := d.Fields[createConfigMap]
	if len(fc.Unknown) != MaxUnknownFields || len(fc.IllTyped) != MaxUnknownFields || fc.Overflow != 2*5*2 || fc.Bodies != 2 {
		t.Errorf("kept %d unknown, %d ill-typed, overflow %d", len(fc.Unknown), len(fc.IllTyped), fc.Overflow)
	}
	// Known paths keep counting past the bound.
	d.AddFields(createConfigMap, fields.Result{Unknown: unknown[:1]}, 1)
	if fc.Unknown[unknown[0]] != 3 {
		t.Errorf("count of a kept path = %d, want 3", fc.Unknown[unknown[0]])
	}

	// The bound over all operations.
	var big Delta
	set := make([]string, MaxSetFields+1)
	for i := range set {
		set[i] = fmt.Sprintf("p%05d", i)
	}
	ops := MaxFieldEntries/MaxSetFields + 1
	for i := range ops {
		big.AddFields(fmt.Sprintf("op%d", i), fields.Result{Set: set}, 1)
	}
	var overflow int64
	for _, fc := range big.Fields {
		overflow += fc.Overflow
	}
	if big.fieldEntries != MaxFieldEntries || overflow != int64(ops*len(set)-MaxFieldEntries) {
		t.Errorf("%d entries, overflow %d; want %d and %d", big.fieldEntries, overflow, MaxFieldEntries, ops*len(set)-MaxFieldEntries)
	}
	// Merging keeps the bound, and decoding recounts it.
	var merged Delta
	merged.Merge(&big)
	merged.Merge(&d)
	if merged.fieldEntries != MaxFieldEntries {
		t.Errorf("merged %d entries", merged.fieldEntries)
	}
	data, err := Encode(&merged)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatalf("a delta at its bounds (%d bytes) does not decode: %v", len(data), err)
	}
	if back.fieldEntries != MaxFieldEntries {
		t.Errorf("decoded %d entries", back.fieldEntries)
	}
}

func TestReportFields(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := cat.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	var d Delta
	for _, h := range sampleHits() {
		d.Add(h)
	}
	for _, b := range walked(t) {
		d.AddFields(b.op, b.r, 1)
	}
	d.AddMalformedBodies(patchDeployment, 1)
	r := NewReport(cat, &d)
	rows := map[string]OperationReport{}
	for _, op := range r.Operations {
		rows[op.ID] = op
		_, hasBody := schemas.Body(op.ID)
		if (op.Fields != nil) != hasBody {
			t.Errorf("%s: field report %v, body schema %v", op.ID, op.Fields != nil, hasBody)
		}
		if op.Fields != nil && op.Fields.InSchema != schemas.FieldCount(op.ID) {
			t.Errorf("%s: %d fields in schema, want %d", op.ID, op.Fields.InSchema, schemas.FieldCount(op.ID))
		}
	}
	create := rows[createDeployment].Fields
	if create.Bodies != 2 || create.Hit != len(create.Set) || create.Hit < 15 ||
		create.Percent != float64(create.Hit)*100/float64(create.InSchema) {
		t.Errorf("Deployment create: %+v", create)
	}
	if !slices.IsSortedFunc(create.Set, func(a, b FieldHit) int { return compare(a.Path, b.Path) }) {
		t.Error("set paths not sorted")
	}
	if want := []FieldHit{{Path: "spec.template.spec.containers[].colour", Count: 1}}; !reflect.DeepEqual(create.Unknown, want) {
		t.Errorf("unknown %+v", create.Unknown)
	}
	if len(create.IllTyped) != 2 {
		t.Errorf("ill-typed %+v", create.IllTyped)
	}
	if patch := rows[patchDeployment].Fields; patch.Bodies != 3 || patch.Malformed != 1 || patch.Hit != len(patch.Set) {
		t.Errorf("Deployment patch: %+v", patch)
	}
	// A CRD's schema holds JSONSchemaProps in JSONSchemaProps; the schema's
	// paths stop at the first repeat, so deeper set paths are not counted.
	crd := rows["createApiextensionsV1CustomResourceDefinition"].Fields
	var outside []string
	for _, h := range crd.Set {
		if h.NotInSchema {
			outside = append(outside, h.Path)
		}
	}
	if !slices.Equal(outside, []string{"spec.versions[].schema.openAPIV3Schema.properties{}.properties",
		"spec.versions[].schema.openAPIV3Schema.properties{}.properties{}",
		"spec.versions[].schema.openAPIV3Schema.properties{}.properties{}.type"}) || crd.Hit != len(crd.Set)-3 {
		t.Errorf("CRD paths outside the schema %q, hit %d of %d set", outside, crd.Hit, len(crd.Set))
	}
	if untouched := rows["createCoreV1NamespacedPod"].Fields; untouched.Hit != 0 || untouched.InSchema == 0 || untouched.Set != nil {
		t.Errorf("Pod create: %+v", untouched)
	}

	// Level totals are the sums of their operations'.
	var want FieldSummary
	want.Schemas = true
	for _, op := range r.Operations {
		if op.Fields == nil {
			continue
		}
		want.Bodies += op.Fields.Bodies
		want.Malformed += op.Fields.Malformed
		switch {
		case op.Deprecated:
		case op.Level == catalog.Stable:
			want.Stable.add(op.Fields)
		case op.Level == catalog.Beta:
			want.Beta.add(op.Fields)
		default:
			want.Alpha.add(op.Fields)
		}
		if op.Eligibility == catalog.Eligible {
			want.Eligible.add(op.Fields)
		}
	}
	for _, l := range []*FieldLevelSummary{&want.Stable, &want.Beta, &want.Alpha, &want.Eligible} {
		l.finish()
	}
	if got := r.Summary.Fields; got == nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("field summary %+v, want %+v", got, want)
	}
	s := r.Summary.Fields
	if s.Bodies != 7 || s.Stable.Hit == 0 || s.Stable.Operations < 300 || s.Stable.InSchema < 50000 || s.Beta.Operations == 0 {
		t.Errorf("implausible field summary %+v", s)
	}
	var asJSON struct {
		Summary struct {
			Fields struct {
				Stable struct{ InSchema, Hit int }
			}
		}
		Operations []struct {
			ID     string
			Fields *struct{ InSchema, Hit int }
		}
	}
	if err := json.Unmarshal([]byte(mustJSONReport(t, r)), &asJSON); err != nil || asJSON.Summary.Fields.Stable.Hit != s.Stable.Hit {
		t.Errorf("report JSON: %+v, %v", asJSON.Summary, err)
	}
}

// TestReportFieldsWithoutSchemas: a catalog from a document has no
// schemas; the paths are still reported, with nothing to count them
// against.
func TestReportFieldsWithoutSchemas(t *testing.T) {
	cat, err := catalog.FromOpenAPIV2([]byte(`{"swagger":"2.0","paths":{
		"/apis/apps/v1/namespaces/{namespace}/deployments":{"post":{"operationId":"createAppsV1NamespacedDeployment","x-kubernetes-action":"post"}}}}`), "1.37")
	if err != nil {
		t.Fatal(err)
	}
	var d Delta
	for _, b := range walked(t) {
		d.AddFields(b.op, b.r, 1)
	}
	r := NewReport(cat, &d)
	if r.Summary.Fields == nil || r.Summary.Fields.Schemas || r.Summary.Fields.Stable.Operations != 1 || r.Summary.Fields.Bodies != 2 {
		t.Errorf("summary %+v", r.Summary.Fields)
	}
	fr := r.Operations[0].Fields
	if fr == nil || fr.InSchema != 0 || fr.Hit != 0 || fr.Percent != 0 || len(fr.Set) == 0 || !fr.Set[0].NotInSchema {
		t.Errorf("operation %+v", fr)
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func mustJSONReport(t *testing.T, r *Report) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNullFieldEntries: a delta read from outside may hold null entries;
// merging and reporting it must not panic.
func TestNullFieldEntries(t *testing.T) {
	var odd Delta
	if err := json.Unmarshal([]byte(`{"requests":1,"fields":{"createCoreV1NamespacedConfigMap":null}}`), &odd); err != nil {
		t.Fatal(err)
	}
	var d Delta
	d.Merge(&odd)
	d.AddFields(createConfigMap, fields.Result{Set: []string{"data"}}, 1)
	odd.AddFields(createConfigMap, fields.Result{Set: []string{"data"}}, 1)
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	for _, delta := range []*Delta{&odd, &d} {
		for _, op := range NewReport(cat, delta).Operations {
			if op.ID == createConfigMap && (op.Fields == nil || op.Fields.Hit != 1) {
				t.Errorf("ConfigMap create: %+v", op.Fields)
			}
		}
	}
}
