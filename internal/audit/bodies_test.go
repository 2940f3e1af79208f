package audit

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

func TestBodyKind(t *testing.T) {
	deployment := &catalog.Operation{ID: "patchAppsV1NamespacedDeployment", Group: "apps"}
	custom := &catalog.Operation{ID: "patchExampleComV1NamespacedWidget", Group: "example.com"}
	for _, tc := range []struct {
		verb, uri, body string
		op              *catalog.Operation
		want            fields.BodyKind
	}{
		{"create", "/apis/apps/v1/namespaces/n/deployments", `{"kind":"Deployment"}`, deployment, fields.Object},
		{"update", "/apis/apps/v1/namespaces/n/deployments/d", `{"kind":"Deployment"}`, deployment, fields.Object},
		{"patch", "/apis/apps/v1/namespaces/n/deployments/d?fieldManager=kubectl-patch", ` [{"op":"remove","path":"/a"}]`, deployment, fields.JSONPatch},
		{"patch", "/apis/apps/v1/namespaces/n/deployments/d?fieldManager=kubectl-patch", `{"spec":{}}`, deployment, fields.StrategicMergePatch},
		{"patch", "/apis/apps/v1/namespaces/n/deployments/d", `{"apiVersion":"apps/v1","kind":"Deployment"}`, deployment, fields.StrategicMergePatch},
		{"patch", "/apis/apps/v1/namespaces/n/deployments/d?fieldManager=kubectl&force=true", `{"spec":{}}`, deployment, fields.ApplyPatch},
		{"patch", "/apis/apps/v1/namespaces/n/deployments/d?fieldManager=kubectl", `{"apiVersion":"apps/v1","kind":"Deployment","spec":{}}`, deployment, fields.ApplyPatch},
		{"patch", "/apis/example.com/v1/namespaces/n/widgets/w?fieldManager=kubectl-patch", `{"spec":{}}`, custom, fields.MergePatch},
		{"patch", "/apis/example.com/v1/namespaces/n/widgets/w?fieldManager=kubectl-patch", `[]`, custom, fields.JSONPatch},
		{"patch", "/apis/networking.k8s.io/v1/namespaces/n/ingresses/i", `{}`, &catalog.Operation{Group: "networking.k8s.io"}, fields.StrategicMergePatch},
	} {
		ev := &Event{Verb: tc.verb, RequestURI: tc.uri, RequestObject: []byte(tc.body)}
		if got := BodyKind(ev, tc.op); got != tc.want {
			t.Errorf("%s %s %s: %v, want %v", tc.verb, tc.uri, tc.body, got, tc.want)
		}
	}
}

// bodyEvent is auditgen.BodyEvent as a line.
func bodyEvent(id, stage, verb, user, uri, body string) string {
	return auditgen.BodyEvent(id, stage, verb, user, uri, body) + "\n"
}

// TestAnalyzeBodies: requestObjects add field coverage once per counted
// request, whatever the stages, duplicates, workers and chunks, for the
// requests Select keeps.
func TestAnalyzeBodies(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := cat.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	const (
		create = "/api/v1/namespaces/ns/configmaps?fieldManager=kubectl-create"
		patch  = "/api/v1/namespaces/ns/configmaps/cm?fieldManager=kubectl-patch"
		apply  = "/api/v1/namespaces/ns/configmaps/cm?fieldManager=kubectl&force=false"
	)
	type request struct {
		verb, uri, body string
		kind            fields.BodyKind
	}
	requests := []request{
		{"create", create, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","colour":"blue"},"data":{"k":"v"},"immutable":"yes"}`, fields.Object},
		{"patch", patch, `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`, fields.JSONPatch},
		{"patch", patch, `{"data":{"$patch":"replace","k":"v"}}`, fields.StrategicMergePatch},
		{"patch", apply, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"binaryData":{"b":"eA=="}}`, fields.ApplyPatch},
		{"patch", patch, `[{"path":"/data"}]`, fields.JSONPatch}, // no op: malformed
		{"patch", patch, `null`, fields.MergePatch},              // no body
	}
	// Each request is logged at every stage, its ResponseComplete twice;
	// another user's copies are left out by Select; the whole log comes
	// twice (overlapping files).
	var log strings.Builder
	for round := range 3 {
		for i, r := range requests {
			for _, user := range []string{"tester", "other"} {
				id := fmt.Sprintf("%s-%d-%d", user, round, i)
				log.WriteString(bodyEvent(id, StageRequestReceived, r.verb, user, r.uri, ""))
				log.WriteString(bodyEvent(id, StageResponseComplete, r.verb, user, r.uri, r.body))
				log.WriteString(bodyEvent(id, StageResponseComplete, r.verb, user, r.uri, r.body))
			}
		}
	}
	data := []byte(log.String() + log.String())

	// What each request adds, walked one by one: three rounds of each.
	var want coverage.Delta
	for range 3 {
		for _, r := range requests {
			res := match.New(cat).MatchRequestURI((&Event{Verb: r.verb}).Method(), r.uri)
			want.AddN(coverage.NewHit(res, (&Event{Verb: r.verb}).Method(), 200, clientOf("tester", "kubectl/v1.37.2")), 1)
		}
	}
	for range 3 {
		for _, r := range requests {
			id := map[string]string{"create": "createCoreV1NamespacedConfigMap", "patch": "patchCoreV1NamespacedConfigMap"}[r.verb]
			if r.body == "null" {
				continue
			}
			got, err := fields.Walk(schemas, id, r.kind, []byte(r.body))
			if err != nil {
				want.AddMalformedBodies(id, 1)
				continue
			}
			want.AddFields(id, got, 1)
		}
	}
	fc := want.Fields["createCoreV1NamespacedConfigMap"]
	if fc == nil || fc.Unknown["metadata.colour"] != 3 || fc.IllTyped["immutable"] != 3 || want.Fields["patchCoreV1NamespacedConfigMap"].Malformed != 3 {
		t.Fatalf("the log misses a case: %+v", want.Fields)
	}
	if p := want.Fields["patchCoreV1NamespacedConfigMap"]; p.Bodies != 12 || len(p.Unknown) != 0 || p.Set["binaryData{}"] != 3 || p.Set["metadata.labels{}"] != 3 {
		t.Fatalf("patch bodies: %+v", p)
	}

	defer func(size int) { chunkSize = size }(chunkSize)
	for _, tc := range []struct{ workers, chunk int }{{1, 1 << 20}, {3, 900}} {
		chunkSize = tc.chunk
		var d coverage.Delta
		stats, err := AnalyzeSources(context.Background(), []Source{memSource("log", data)}, match.New(cat), &d, Options{
			Workers: tc.workers,
			Select:  func(user, _, _ string) bool { return user == "tester" },
		})
		if err != nil {
			t.Fatal(err)
		}
		if stats.Requests != int64(3*2*len(requests)) {
			t.Errorf("%d requests counted", stats.Requests)
		}
		if !reflect.DeepEqual(d.Fields, want.Fields) || !reflect.DeepEqual(d.Operations, want.Operations) {
			t.Errorf("workers %d, chunks of %d: fields\n%+v\nwant\n%+v", tc.workers, tc.chunk, d.Fields, want.Fields)
		}
	}
}

// TestAnalyzeWithoutSchemas: a catalog without schemas reads requestObjects
// for nothing, and says nothing about fields.
func TestAnalyzeWithoutSchemas(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	cat.SetSchemasLoader(func() (*catalog.Schemas, error) { return nil, catalog.ErrNoSchemas })
	data := bodyEvent("a", StageResponseComplete, "create", "u", "/api/v1/namespaces/ns/configmaps", `{"data":{"k":"v"}}`)
	var d coverage.Delta
	if _, err := AnalyzeSources(context.Background(), []Source{memSource("log", []byte(data))}, match.New(cat), &d, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(d.Fields) != 0 || d.Operations["createCoreV1NamespacedConfigMap"] == nil {
		t.Errorf("fields %+v, operations %v", d.Fields, slices.Sorted(maps.Keys(d.Operations)))
	}
}
