package record

import (
	"fmt"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// bodyEvent is a completed request that carries its body, as a proxy that
// keeps bodies emits it.
func bodyEvent(id uint64, method, path, contentType, body string) *Event {
	return &Event{ID: id, Stage: StageResponseComplete, Method: method, Path: path, Status: 201,
		ContentType: contentType, Body: []byte(body)}
}

const (
	configMapsPath  = "/api/v1/namespaces/n/configmaps"
	deploymentPath  = "/apis/apps/v1/namespaces/n/deployments/web"
	configMapCreate = "createCoreV1NamespacedConfigMap"
	deploymentPatch = "patchAppsV1NamespacedDeployment"
)

func TestRecorderReadsBodies(t *testing.T) {
	rec := newTestRecorder(t)
	events := []*Event{
		bodyEvent(1, "POST", configMapsPath, "application/json",
			`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"app":"web"}},"data":{"k":"v"}}`),
		bodyEvent(2, "POST", configMapsPath, "application/json; charset=utf-8", `{"kind":"ConfigMap","metadata":{"name":"b"},"dat":{}}`),
		bodyEvent(3, "POST", configMapsPath, "application/json", `{"metadata":`),
		bodyEvent(4, "PATCH", deploymentPath, "application/merge-patch+json", `{"spec":{"replicas":"three","paused":true}}`),
		bodyEvent(5, "PATCH", deploymentPath, "application/json-patch+json", `[{"op":"replace","path":"/spec/replicas","value":2}]`),
		bodyEvent(6, "PATCH", deploymentPath, "application/strategic-merge-patch+json",
			`{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"name":"c","image":"i"}]}}}}`),
		// Not read: YAML apply, protobuf, and a patch of no known type.
		bodyEvent(7, "PATCH", deploymentPath, "application/apply-patch+yaml", "spec:\n  replicas: 2\n"),
		bodyEvent(8, "PATCH", deploymentPath, "application/vnd.kubernetes.protobuf", "k8s\x00"),
		bodyEvent(9, "PATCH", deploymentPath, "text/plain", `{"spec":{}}`),
		// Bodies of unknown requests count nowhere.
		bodyEvent(10, "POST", "/apis/example.com/v1/widgets", "application/json", `{"spec":{}}`),
	}
	truncated := bodyEvent(11, "PATCH", deploymentPath, "application/merge-patch+json", `{"spec":{"repl`)
	truncated.BodyTruncated = true
	// A Secret body the proxy could not redact because it was cut: no body
	// at all, but truncated.
	secret := bodyEvent(12, "POST", "/api/v1/namespaces/n/secrets", "application/json", "")
	secret.BodyTruncated = true
	events = append(events, truncated, secret)
	for _, ev := range events {
		rec.Observe(ev)
	}
	d := rec.Take()
	if d.Requests != int64(len(events)) {
		t.Fatalf("%d requests, want %d", d.Requests, len(events))
	}

	cm := d.Fields[configMapCreate]
	if cm == nil {
		t.Fatalf("no fields of %s: %v", configMapCreate, d.Fields)
	}
	if cm.Bodies != 3 || cm.Malformed != 1 || cm.Overflow != 0 {
		t.Errorf("%s: %d bodies, %d malformed, %d overflow; want 3, 1, 0", configMapCreate, cm.Bodies, cm.Malformed, cm.Overflow)
	}
	wantSet := map[string]int64{
		"apiVersion": 1, "kind": 2, "metadata": 2, "metadata.name": 2, "metadata.labels": 1, "metadata.labels{}": 1,
		"data": 1, "data{}": 1,
	}
	if !maps.Equal(cm.Set, wantSet) {
		t.Errorf("%s set %v, want %v", configMapCreate, cm.Set, wantSet)
	}
	if want := map[string]int64{"dat": 1}; !maps.Equal(cm.Unknown, want) {
		t.Errorf("%s unknown %v, want %v", configMapCreate, cm.Unknown, want)
	}

	dp := d.Fields[deploymentPatch]
	if dp == nil {
		t.Fatalf("no fields of %s: %v", deploymentPatch, d.Fields)
	}
	// Merge, JSON and strategic patches are read; the truncated one is
	// counted as malformed; YAML, protobuf and text/plain are not counted.
	if dp.Bodies != 4 || dp.Malformed != 1 {
		t.Errorf("%s: %d bodies, %d malformed; want 4, 1", deploymentPatch, dp.Bodies, dp.Malformed)
	}
	wantSet = map[string]int64{
		"spec": 3, "spec.replicas": 2, "spec.paused": 1,
		"spec.template": 1, "spec.template.spec": 1, "spec.template.spec.containers": 1,
		"spec.template.spec.containers[]": 1, "spec.template.spec.containers[].name": 1, "spec.template.spec.containers[].image": 1,
	}
	if !maps.Equal(dp.Set, wantSet) {
		t.Errorf("%s set %v, want %v", deploymentPatch, dp.Set, wantSet)
	}
	if want := map[string]int64{"spec.replicas": 1}; !maps.Equal(dp.IllTyped, want) || len(dp.Unknown) != 0 {
		t.Errorf("%s ill-typed %v, unknown %v; want %v and none", deploymentPatch, dp.IllTyped, dp.Unknown, want)
	}
	// The Secret body the proxy dropped because it was cut is counted as
	// malformed, like any other truncated body.
	if fc := d.Fields["createCoreV1NamespacedSecret"]; fc == nil || fc.Bodies != 1 || fc.Malformed != 1 || len(fc.Set) != 0 {
		t.Errorf("createCoreV1NamespacedSecret fields %+v, want 1 body, malformed", fc)
	}
	if len(d.Fields) != 3 {
		t.Errorf("fields of %v, want only %s, %s and the Secret's", slices.Sorted(maps.Keys(d.Fields)), configMapCreate, deploymentPatch)
	}

	families := scrape(t, rec.metrics)
	for outcome, want := range map[bodyOutcome]float64{bodyWalked: 5, bodyMalformed: 1, bodyTruncated: 2, bodyUnread: 3} {
		if got := value(families, "apisnoop_record_request_bodies_total", string(outcome)); got != want {
			t.Errorf("bodies %s = %v, want %v", outcome, got, want)
		}
	}
}

func TestRecorderLoadsSchemasOnlyForBodies(t *testing.T) {
	rec := newTestRecorder(t)
	rec.Observe(&Event{ID: 1, Stage: StageResponseComplete, Method: "POST", Path: configMapsPath, Status: 201})
	rec.Observe(&Event{ID: 2, Stage: StageResponseComplete, Method: "GET", Path: configMapsPath, Status: 200})
	if rec.matching.Load().bodies.loaded.Load() {
		t.Fatal("schemas loaded without a body")
	}
	if d := rec.Take(); d.Requests != 2 || len(d.Fields) != 0 {
		t.Fatalf("delta of %d requests with fields %v, want 2 and none", d.Requests, d.Fields)
	}
	rec.Observe(bodyEvent(3, "POST", configMapsPath, "application/json", `{"metadata":{"name":"a"}}`))
	if !rec.matching.Load().bodies.loaded.Load() {
		t.Error("schemas not loaded for a body")
	}
	if fc := rec.Take().Fields[configMapCreate]; fc == nil || fc.Set["metadata.name"] != 1 {
		t.Errorf("fields %+v, want metadata.name set", fc)
	}
}

func TestRecorderWithoutSchemasCountsRequestsOnly(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	// A catalog decoded from outside (a sidecar's --catalog-file) has no
	// schemas.
	encoded, err := catalog.Encode(cat)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := catalog.Decode(encoded)
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(match.New(bare), nil)
	rec.Observe(bodyEvent(1, "POST", configMapsPath, "application/json", `{"metadata":{"name":"a"}}`))
	d := rec.Take()
	if d.Requests != 1 || d.Operations[configMapCreate] == nil || len(d.Fields) != 0 {
		t.Errorf("delta %+v, want the request and no fields", d)
	}
}

// TestRecorderReadsBodiesConcurrently runs under -race in CI as everywhere:
// walkers come from a pool, one per Observe.
func TestRecorderReadsBodiesConcurrently(t *testing.T) {
	rec := newTestRecorder(t)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := uint64(w*each + i + 1)
				if i%2 == 0 {
					rec.Observe(bodyEvent(id, "POST", configMapsPath, "application/json",
						fmt.Sprintf(`{"metadata":{"name":"cm-%d-%d"},"data":{"k":"v"}}`, w, i)))
				} else {
					rec.Observe(bodyEvent(id, "PATCH", deploymentPath, "application/strategic-merge-patch+json",
						`{"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}}}}`))
				}
				if i%50 == 0 {
					rec.Take()
				}
			}
		})
	}
	wg.Wait()
	d := rec.Total()
	half := int64(workers * each / 2)
	cm, dp := d.Fields[configMapCreate], d.Fields[deploymentPatch]
	if cm == nil || dp == nil || cm.Bodies != half || dp.Bodies != half {
		t.Fatalf("fields %v, want %d bodies of each operation", d.Fields, half)
	}
	want := map[string]int64{"metadata": half, "metadata.name": half, "data": half, "data{}": half}
	if !maps.Equal(cm.Set, want) {
		t.Errorf("%s set %v, want %v", configMapCreate, cm.Set, want)
	}
	want = map[string]int64{"spec": half, "spec.replicas": half, "spec.selector": half,
		"spec.selector.matchLabels": half, "spec.selector.matchLabels{}": half}
	if !maps.Equal(dp.Set, want) {
		t.Errorf("%s set %v, want %v", deploymentPatch, dp.Set, want)
	}
}

// TestShipperDeliversFieldsTheCollectorAccepts sends what bodies set through
// the real intake check, with the unknown fields the collector would refuse
// (an empty name, a name longer than intake.MaxFieldPath) left out and
// counted in Overflow.
func TestShipperDeliversFieldsTheCollectorAccepts(t *testing.T) {
	collector := &testCollector{}
	srv := httptest.NewServer(collector)
	defer srv.Close()
	rec := newTestRecorder(t)
	shipper, err := NewShipper(ShipperConfig{URL: srv.URL, Source: "pod-uid", Release: "1.37"}, rec, rec.metrics)
	if err != nil {
		t.Fatal(err)
	}

	long := strings.Repeat("x", 2000)
	rec.Observe(bodyEvent(1, "POST", configMapsPath, "application/json",
		`{"metadata":{"name":"a"},"":1,"`+long+`":2,"extra":3}`))
	rec.Observe(bodyEvent(2, "POST", configMapsPath, "application/json", `[1]`))
	if err := shipper.Ship(t.Context()); err != nil {
		t.Fatalf("the collector refused the batch: %v", err)
	}
	collector.mu.Lock()
	defer collector.mu.Unlock()
	fc := collector.got.Fields[configMapCreate]
	if fc == nil || fc.Bodies != 2 || fc.Malformed != 1 || fc.Overflow != 2 ||
		!maps.Equal(fc.Unknown, map[string]int64{"extra": 1}) || fc.Set["metadata.name"] != 1 {
		t.Errorf("collector got %+v, want 2 bodies, 1 malformed, 2 paths overflowed, unknown extra", fc)
	}
}
