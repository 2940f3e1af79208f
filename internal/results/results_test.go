package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

func testSession(name string) *snoopv1alpha1.SnoopSession {
	return &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: "0b7e3c5e-6f7d-4a55-9d8a-3f1f3c2d9a10"},
		Spec:       snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37"},
	}
}

func load137(t testing.TB) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// smallState is a few requests of two clients, with known numbers.
func smallState() *State {
	kubectl := coverage.Client{User: "admin", UserAgent: "kubectl/v1.37.0"}
	robot := coverage.Client{Pod: "web-1", Namespace: "shop", ServiceAccount: "robot", UserAgent: "controller/v1"}
	st := &State{Sources: map[string]uint64{"pod-uid-1": 7, "pod-uid-2": 3}, Ignored: 4}
	for _, h := range []struct {
		hit coverage.Hit
		n   int64
	}{
		{coverage.Hit{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200, Client: kubectl}, 5},
		{coverage.Hit{OperationID: "readCoreV1NamespacedPod", Verb: "get", Status: 404, Client: robot}, 2},
		{coverage.Hit{OperationID: "createAdmissionregistrationV1beta1MutatingAdmissionPolicy", Verb: "create", Status: 201, Client: robot}, 1},
		{coverage.Hit{Unknown: "GET /apis/example.com/v1/widgets", Verb: "list", Status: 200, Client: robot}, 3},
		{coverage.Hit{Unknown: "GET /healthz", Verb: "get", Status: 500, Client: kubectl}, 3},
		{coverage.Hit{Unknown: "GET /apis/a.example.com/v1/gadgets", Verb: "list", Status: 404, Client: robot}, 3},
		{coverage.Hit{Unknown: "GET /version/extra", Verb: "get", Status: 404, Client: robot}, 9},
		{coverage.Hit{Unknown: "GET /zzz", Verb: "get", Status: 200, Client: robot}, 1},
		{coverage.Hit{Unknown: "GET /aaa", Verb: "get", Status: 200, Client: robot}, 1},
	} {
		st.Delta.AddN(h.hit, h.n)
	}
	return st
}

// bigState has more detail than one ConfigMap holds, within the bounds of
// a Delta: coverage.MaxUnknownPaths random-looking unknown shapes and
// coverage.MaxClients clients with long user agents, each using many
// operations with varied counts. The numbers are random but seeded.
func bigState(t testing.TB, c *catalog.Catalog) *State {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	st := &State{Sources: map[string]uint64{}, Ignored: 12}
	for i := range 200 {
		st.Sources[fmt.Sprintf("%08x-pod-uid-%d", rng.Uint32(), i)] = rng.Uint64N(1 << 20)
	}
	ops := c.Operations
	for i := range coverage.MaxClients {
		client := coverage.Client{
			Pod: fmt.Sprintf("web-%s-%s", word(10), word(5)), Namespace: fmt.Sprintf("team-%d", i%40),
			ServiceAccount: "sa-" + word(6), UserAgent: fmt.Sprintf("controller-%s/v1.%d (linux/amd64) %s", word(8), i%30, word(40)),
		}
		for range 30 {
			op := ops[rng.IntN(len(ops))]
			hit := coverage.Hit{OperationID: op.ID, Verb: "get", Status: []int{200, 201, 404, 409, 500}[rng.IntN(5)], Client: client}
			if rng.IntN(10) == 0 {
				hit.Test = "[sig-" + word(5) + "] " + word(30)
			}
			st.Delta.AddN(hit, 1+rng.Int64N(1000))
		}
		if i < coverage.MaxUnknownPaths {
			shape := fmt.Sprintf("GET /apis/%s.example.com/v1/namespaces/{namespace}/%s/%s", word(12), word(10), word(16))
			st.Delta.AddN(coverage.Hit{Unknown: shape, Verb: "list", Status: 404, Client: client}, 1+rng.Int64N(100))
		}
	}
	if len(st.Delta.Clients) != coverage.MaxClients || len(st.Delta.Unknown) != coverage.MaxUnknownPaths || st.Delta.Overflow != 0 {
		t.Fatalf("big state has %d clients, %d unknown shapes, overflow %d: want the bounds exactly",
			len(st.Delta.Clients), len(st.Delta.Unknown), st.Delta.Overflow)
	}
	return st
}

func TestStateJSONRoundTrip(t *testing.T) {
	st := smallState()
	for name, v := range map[string]any{"value": *st, "pointer": st} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back State
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, st) {
			t.Errorf("%s: round trip differs:\n got %+v\nwant %+v", name, back, *st)
		}
		if !bytes.Contains(data, []byte(`"clients"`)) {
			t.Errorf("%s: clients not serialized: %s", name, data)
		}
	}
}

func TestConfigMapsRoundTrip(t *testing.T) {
	c := load137(t)
	session := testSession("demo")
	st := smallState()
	cms, err := ConfigMaps(session, st, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cms) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(cms))
	}
	cm := cms[0]
	if cm.Name != "demo-results" || cm.Namespace != "shop" {
		t.Errorf("ConfigMap %s/%s, want shop/demo-results", cm.Namespace, cm.Name)
	}
	if cm.Labels[snoopv1alpha1.ManagedByLabel] != snoopv1alpha1.ManagedByValue || cm.Labels[SessionLabel] != "demo" {
		t.Errorf("labels %v", cm.Labels)
	}
	ref := metav1.GetControllerOf(cm)
	if ref == nil || ref.Kind != "SnoopSession" || ref.Name != "demo" || ref.UID != session.UID ||
		ref.APIVersion != "snoop.apisnoop.dev/v1alpha1" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("owner reference %+v", ref)
	}
	md := cm.Data[ReportKey]
	for _, want := range []string{"# API coverage of Kubernetes 1.37", "| 5 | stable (eligible) | `listCoreV1NamespacedPod` |", "## Eligible operations not hit (600)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%.600s", want, md)
		}
	}
	if strings.Contains(md, "Cut to fit") {
		t.Error("a small report was cut")
	}

	back, err := FromConfigMaps(deref(cms))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, st)
	}

	again, err := ConfigMaps(session, smallState(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, cms) {
		t.Error("equal states gave different ConfigMaps")
	}
}

func TestConfigMapsShardLargeState(t *testing.T) {
	c := load137(t)
	st := bigState(t, c)
	session := testSession("big")
	cms, err := ConfigMaps(session, st, c)
	if err != nil {
		t.Fatal(err)
	}
	compressed, err := encode(st)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(st)
	t.Logf("state: %d bytes of JSON, %d compressed, in %d ConfigMaps", len(raw), len(compressed), len(cms))
	if len(compressed) <= maxConfigMapBytes {
		t.Fatalf("the big state compresses to %d bytes, not more than 1 MiB: the test proves nothing", len(compressed))
	}
	if len(cms) < 2 {
		t.Fatalf("%d ConfigMaps, want several", len(cms))
	}
	wantNames := Names("big", len(cms))
	for i, cm := range cms {
		serialized, err := json.Marshal(cm)
		if err != nil {
			t.Fatal(err)
		}
		dataBytes := 0
		for k, v := range cm.Data {
			dataBytes += len(k) + len(v)
		}
		for k, v := range cm.BinaryData {
			dataBytes += len(k) + len(v)
		}
		t.Logf("%s: %d bytes as JSON, %d bytes of data", cm.Name, len(serialized), dataBytes)
		if len(serialized) >= maxConfigMapBytes || dataBytes >= maxConfigMapBytes {
			t.Errorf("%s: %d bytes as JSON, %d of data: want both below 1 MiB", cm.Name, len(serialized), dataBytes)
		}
		if cm.Name != wantNames[i] {
			t.Errorf("ConfigMap %d is %s, want %s", i, cm.Name, wantNames[i])
		}
		if _, ok := cm.Data[ReportKey]; ok != (i == 0) {
			t.Errorf("%s: report.md present %v, want only in the first", cm.Name, ok)
		}
	}
	md := cms[0].Data[ReportKey]
	if !strings.Contains(md, "Cut to fit this ConfigMap") || !strings.Contains(md, "kubectl snoop report big -n shop") {
		t.Errorf("report.md of 5000 unknown shapes is not cut with a note; it ends:\n%s", md[max(0, len(md)-300):])
	}
	if n := escapedLen(md); n > reportBudget {
		t.Errorf("report.md takes %d bytes escaped, budget %d", n, reportBudget)
	}

	// Any order reads back the same state.
	items := deref(cms)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	back, err := FromConfigMaps(items)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Error("the sharded state does not read back equal")
	}
	again, err := ConfigMaps(session, st, c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, cms) {
		t.Error("equal states gave different ConfigMaps")
	}
}

func TestFromConfigMapsRefusesIncompleteResults(t *testing.T) {
	c := load137(t)
	session := testSession("big")
	big := bigState(t, c)
	cms, err := ConfigMaps(session, big, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cms) < 3 {
		t.Fatalf("%d ConfigMaps, want at least 3 for this test", len(cms))
	}
	// Other writes: a smaller one and one as big; their shards and the
	// first one's do not mix.
	small, err := ConfigMaps(session, smallState(), c)
	if err != nil {
		t.Fatal(err)
	}
	big.Ignored++
	other, err := ConfigMaps(session, big, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(other) != len(cms) {
		t.Fatalf("the other write has %d shards, want %d", len(other), len(cms))
	}
	mixed := deref(cms)
	mixed[1] = *other[1]

	without := func(i int) []corev1.ConfigMap {
		items := deref(cms)
		return append(items[:i:i], items[i+1:]...)
	}
	corrupt := deref(cms)
	corrupt[1] = *corrupt[1].DeepCopy()
	for k, v := range corrupt[1].BinaryData {
		v[len(v)/2] ^= 0xff
		corrupt[1].BinaryData[k] = v
	}
	noIndex := deref(cms)
	noIndex[1] = *noIndex[1].DeepCopy()
	delete(noIndex[1].Data, IndexKey)

	for _, tc := range []struct {
		name string
		cms  []corev1.ConfigMap
		want string
	}{
		{"none", nil, "no results"},
		{"missing middle shard", without(1), "missing shard 1 of"},
		{"missing last shard", without(len(cms) - 1), fmt.Sprintf("missing shard %d of %d", len(cms)-1, len(cms))},
		{"missing first shard", without(0), "missing shard 0"},
		{"extra shard of an earlier write", append(deref(small), *cms[2]), "extra ConfigMap shop/big-results-2 holds shard 2"},
		{"shard of another write", mixed, "ConfigMap shop/big-results-1 is from another write"},
		{"duplicate shard", append(deref(cms), *cms[1]), "shard 1 is in both"},
		{"corrupt shard", corrupt, "SHA-256"},
		{"no index", noIndex, "has no index.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromConfigMaps(tc.cms)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if tc.name == "none" != errors.Is(err, ErrNoResults) {
				t.Errorf("errors.Is(%v, ErrNoResults) = %v", err, errors.Is(err, ErrNoResults))
			}
		})
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("a", 200) + "." + strings.Repeat("b", 52)
	twin := strings.Repeat("a", 200) + "." + strings.Repeat("c", 52)
	for _, tc := range []struct {
		session string
		want    []string
	}{
		{"demo", []string{"demo-results", "demo-results-1", "demo-results-2"}},
		{long, nil},
		{strings.Repeat("x", 230) + "-." + strings.Repeat("y", 22), nil},
	} {
		names := Names(tc.session, 12)
		if tc.want != nil && !reflect.DeepEqual(names[:3], tc.want) {
			t.Errorf("Names(%q) = %v, want %v", tc.session, names[:3], tc.want)
		}
		// The last name there can be.
		last := names[0] + "-" + strconv.Itoa(maxShards-1)
		for _, n := range append(names, last) {
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Errorf("name %q: %v", n, errs)
			}
		}
		if errs := validation.IsValidLabelValue(sessionLabelValue(tc.session)); len(errs) > 0 {
			t.Errorf("label value for %q: %v", tc.session, errs)
		}
	}
	if Names(long, 1)[0] == Names(twin, 1)[0] || sessionLabelValue(long) == sessionLabelValue(twin) {
		t.Error("two long session names share their results' names")
	}
}

func TestSummary(t *testing.T) {
	c := load137(t)
	st := smallState()
	got := Summary(st, c)
	sum := c.Summary()
	// Two stable operations, both eligible, and one beta one.
	want := snoopv1alpha1.SnoopSessionStatus{
		Requests: 28, UnknownRequests: 20, FailedRequests: 17, IgnoredRequests: 4, Clients: 2,
		Coverage: snoopv1alpha1.CoverageSummary{
			Stable:   snoopv1alpha1.LevelCoverage{Operations: int32(sum.Stable), Hit: 2, Percent: "0.3"},
			Beta:     snoopv1alpha1.LevelCoverage{Operations: int32(sum.Beta), Hit: 1, Percent: "0.7"},
			Alpha:    snoopv1alpha1.LevelCoverage{Operations: int32(sum.Alpha), Hit: 0, Percent: "0.0"},
			Eligible: snoopv1alpha1.LevelCoverage{Operations: int32(sum.Eligible), Hit: 2, Percent: "0.3"},
		},
		UnknownPaths: []snoopv1alpha1.PathCount{
			{Path: "GET /version/extra", Count: 9},
			{Path: "GET /apis/a.example.com/v1/gadgets", Count: 3},
			{Path: "GET /apis/example.com/v1/widgets", Count: 3},
			{Path: "GET /healthz", Count: 3},
			{Path: "GET /aaa", Count: 1},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Summary =\n%+v\nwant\n%+v", got, want)
	}
	if sum.Stable != 707 || sum.Beta != 152 || sum.Alpha != 112 || sum.Eligible != 602 {
		t.Errorf("catalog 1.37 summary %+v: update the percentages above", sum)
	}

	// Without a catalog: the counts, no coverage.
	bare := Summary(st, nil)
	if bare.Requests != 28 || bare.Coverage != (snoopv1alpha1.CoverageSummary{}) || !reflect.DeepEqual(bare.UnknownPaths, want.UnknownPaths) {
		t.Errorf("Summary without a catalog = %+v", bare)
	}
	// Empty results: zeros, and the totals the session controller shows.
	empty := Summary(&State{}, c)
	if empty.Coverage.Stable != (snoopv1alpha1.LevelCoverage{Operations: 707, Percent: "0.0"}) || empty.UnknownPaths != nil {
		t.Errorf("Summary of nothing = %+v", empty)
	}
}

func TestSummaryOfLargeStateStaysSmall(t *testing.T) {
	c := load137(t)
	status := Summary(bigState(t, c), c)
	data, err := json.Marshal(status)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.UnknownPaths) != MaxUnknownPaths || status.Clients != coverage.MaxClients || len(data) > 2048 {
		t.Errorf("status of the big state: %d unknown paths, %d clients, %d bytes: %s", len(status.UnknownPaths), status.Clients, len(data), data)
	}
}

func deref(cms []*corev1.ConfigMap) []corev1.ConfigMap {
	out := make([]corev1.ConfigMap, len(cms))
	for i, cm := range cms {
		out[i] = *cm
	}
	return out
}

// FuzzFromConfigMaps reads ConfigMaps anyone with write access to the
// session's namespace could have edited: any index and shard must give a
// state or an error, never a panic.
func FuzzFromConfigMaps(f *testing.F) {
	cms, err := ConfigMaps(testSession("demo"), smallState(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cms[0].Data[IndexKey], cms[0].BinaryData[ShardKeyPrefix+"0"], "0")
	f.Add(`{"format":1,"shards":3,"bytes":5,"sha256":""}`, []byte("hello"), "2")
	f.Fuzz(func(t *testing.T, idx string, shard []byte, n string) {
		cm := corev1.ConfigMap{
			Data:       map[string]string{IndexKey: idx},
			BinaryData: map[string][]byte{ShardKeyPrefix + n: shard},
		}
		st, err := FromConfigMaps([]corev1.ConfigMap{cm})
		if err == nil && st == nil {
			t.Fatal("no state and no error")
		}
	})
}
