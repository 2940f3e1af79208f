package catalog

import (
	"errors"
	"path"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

var wantReleases = []string{"1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37"}

func TestReleases(t *testing.T) {
	if got := Releases(); !slices.Equal(got, wantReleases) {
		t.Fatalf("Releases() = %v, want %v", got, wantReleases)
	}
}

func TestLoadEveryRelease(t *testing.T) {
	for _, release := range Releases() {
		t.Run(release, func(t *testing.T) {
			c, err := Load(release)
			if err != nil {
				t.Fatal(err)
			}
			if c.Release != release {
				t.Errorf("Release = %q", c.Release)
			}
			if !strings.HasPrefix(c.Source, "k8s.io/kubernetes@v"+release+".") {
				t.Errorf("Source = %q", c.Source)
			}
			s := c.Summary()
			t.Logf("%+v", s)
			switch {
			case s.Operations < 900 || s.Operations > 2000,
				s.Stable < 550 || s.Beta == 0 || s.Alpha == 0,
				s.Deprecated < 150,
				s.Eligible < 450 || s.Eligible >= s.Stable,
				s.Operations != s.Stable+s.Beta+s.Alpha+s.Deprecated,
				s.Operations != s.Eligible+s.Pending+s.Ineligible,
				len(c.ConformanceTests) < 400:
				t.Errorf("implausible counts: %+v, %d conformance tests", s, len(c.ConformanceTests))
			}
			if !slices.IsSortedFunc(c.Operations, func(a, b Operation) int { return strings.Compare(a.ID, b.ID) }) {
				t.Error("operations not sorted by ID")
			}
			for i, op := range c.Operations {
				if i > 0 && c.Operations[i-1].ID == op.ID {
					t.Errorf("duplicate ID %s", op.ID)
				}
				if op.ID == "" || op.Method == "" || !strings.HasPrefix(op.Path, "/") || op.Level == "" || op.Eligibility == "" || op.Class == "" {
					t.Errorf("incomplete operation %+v", op)
				}
				if op.Eligibility == Ineligible && op.IneligibleReason == "" {
					t.Errorf("%s ineligible without reason", op.ID)
				}
				if op.Eligibility == Eligible && (op.Level != Stable || op.Deprecated || op.Watch) {
					t.Errorf("%s eligible but %s deprecated=%v watch=%v", op.ID, op.Level, op.Deprecated, op.Watch)
				}
				if op.Watch != op.Deprecated {
					t.Errorf("%s: watch %v but deprecated %v; the swagger deprecates exactly the watch operations", op.ID, op.Watch, op.Deprecated)
				}
				if op.Class == ClassResource && op.Resource == "" {
					t.Errorf("%s: resource operation without resource", op.ID)
				}
			}
			for _, test := range c.ConformanceTests {
				if !strings.Contains(test.Codename, "[Conformance]") || test.Testname == "" {
					t.Errorf("odd conformance test %+v", test)
				}
				if _, ok := c.ConformanceTest(test.Codename); !ok {
					t.Errorf("ConformanceTest(%q) not found", test.Codename)
				}
			}
		})
	}
}

func TestLoadUnsupported(t *testing.T) {
	for _, release := range []string{"1.30", "1.99", "", "banana"} {
		if _, err := Load(release); !errors.Is(err, ErrUnsupportedRelease) {
			t.Errorf("Load(%q) error = %v, want ErrUnsupportedRelease", release, err)
		}
	}
}

func TestLoadCaches(t *testing.T) {
	a, err := Load("1.36")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load("v1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("Load did not return the cached catalog")
	}
}

// TestAPISnoop136 pins the comparison documented in doc.go.
func TestAPISnoop136(t *testing.T) {
	c, err := Load("1.36")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Summary()
	if s.Stable != 664 || s.Eligible != 563 || s.Stable+s.Beta+s.Alpha != 908 {
		t.Errorf("1.36: %+v; APISnoop publishes 664 stable and 563 eligible of 908", s)
	}
	for id, level := range map[string]Level{
		"getServiceAccountIssuerOpenIDConfiguration": Stable,
		"getServiceAccountIssuerOpenIDKeyset":        Stable,
		"getStoragemigrationAPIGroup":                Beta,
		"getInternalApiserverAPIGroup":               Alpha,
	} {
		op, _ := c.Operation(id)
		if op.Level != level || op.Eligibility != Ineligible {
			t.Errorf("%s: %s %s, want %s ineligible", id, op.Level, op.Eligibility, level)
		}
	}
}

func TestKnownOperations(t *testing.T) {
	tests := []Operation{
		{ID: "readCoreV1NamespacedPod", Method: "GET", Path: "/api/v1/namespaces/{namespace}/pods/{name}",
			Version: "v1", Resource: "pods", Action: "get", Kind: "Pod", Class: ClassResource, Level: Stable,
			Namespaced: true, Eligibility: Eligible, Category: "core"},
		{ID: "connectCoreV1GetNamespacedPodExec", Method: "GET", Path: "/api/v1/namespaces/{namespace}/pods/{name}/exec",
			Version: "v1", Resource: "pods", Subresource: "exec", Action: "connect", Kind: "PodExecOptions",
			Class: ClassResource, Level: Stable, Namespaced: true, Eligibility: Eligible, Category: "core"},
		{ID: "connectCoreV1PostNamespacedPodProxyWithPath", Method: "POST", Path: "/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
			Version: "v1", Resource: "pods", Subresource: "proxy", Action: "connect", Kind: "PodProxyOptions",
			Class: ClassResource, Level: Stable, Namespaced: true, Eligibility: Eligible, Category: "core"},
		{ID: "listCoreV1PodForAllNamespaces", Method: "GET", Path: "/api/v1/pods",
			Version: "v1", Resource: "pods", Action: "list", Kind: "Pod", Class: ClassResource, Level: Stable,
			Eligibility: Eligible, Category: "core"},
		{ID: "watchCoreV1NamespacedPodList", Method: "GET", Path: "/api/v1/watch/namespaces/{namespace}/pods",
			Version: "v1", Resource: "pods", Action: "watchlist", Kind: "Pod", Class: ClassResource, Level: Stable,
			Deprecated: true, Watch: true, Namespaced: true, Eligibility: Ineligible, IneligibleReason: "deprecated", Category: "core"},
		{ID: "watchCoreV1NamespacedPod", Method: "GET", Path: "/api/v1/watch/namespaces/{namespace}/pods/{name}",
			Version: "v1", Resource: "pods", Action: "watch", Kind: "Pod", Class: ClassResource, Level: Stable,
			Deprecated: true, Watch: true, Namespaced: true, Eligibility: Ineligible, IneligibleReason: "deprecated", Category: "core"},
		{ID: "replaceCoreV1NamespaceFinalize", Method: "PUT", Path: "/api/v1/namespaces/{name}/finalize",
			Version: "v1", Resource: "namespaces", Subresource: "finalize", Action: "put", Kind: "Namespace",
			Class: ClassResource, Level: Stable, Eligibility: Eligible, Category: "core"},
		{ID: "replaceCoreV1NamespaceStatus", Method: "PUT", Path: "/api/v1/namespaces/{name}/status",
			Version: "v1", Resource: "namespaces", Subresource: "status", Action: "put", Kind: "Namespace",
			Class: ClassResource, Level: Stable, Eligibility: Eligible, Category: "core"},
		{ID: "connectCoreV1GetNodeProxy", Method: "GET", Path: "/api/v1/nodes/{name}/proxy",
			Version: "v1", Resource: "nodes", Subresource: "proxy", Action: "connect", Kind: "NodeProxyOptions",
			Class: ClassResource, Level: Stable, Eligibility: Ineligible,
			IneligibleReason: "Unable to be tested, and likely soon deprecated", Category: "core"},
		{ID: "patchAppsV1NamespacedDeploymentScale", Method: "PATCH", Path: "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
			Group: "apps", Version: "v1", Resource: "deployments", Subresource: "scale", Action: "patch", Kind: "Scale",
			Class: ClassResource, Level: Stable, Namespaced: true, Eligibility: Eligible, Category: "apps"},
		{ID: "getAppsAPIGroup", Method: "GET", Path: "/apis/apps/", Group: "apps",
			Class: ClassDiscovery, Level: Stable, Eligibility: Eligible, Category: "apps"},
		{ID: "getAppsV1APIResources", Method: "GET", Path: "/apis/apps/v1/", Group: "apps", Version: "v1",
			Class: ClassDiscovery, Level: Stable, Eligibility: Eligible, Category: "apps"},
		{ID: "getCoreAPIVersions", Method: "GET", Path: "/api/",
			Class: ClassDiscovery, Level: Stable, Eligibility: Eligible, Category: "core"},
		{ID: "getCodeVersion", Method: "GET", Path: "/version/",
			Class: ClassNonResource, Level: Stable, Eligibility: Eligible, Category: "version"},
	}
	for _, release := range Releases() {
		c, err := Load(release)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tests {
			got, ok := c.Operation(want.ID)
			if !ok {
				t.Errorf("%s: %s missing", release, want.ID)
				continue
			}
			if got != want {
				t.Errorf("%s: %s =\n  %+v\nwant\n  %+v", release, want.ID, got, want)
			}
		}
	}
}

// TestListsApplied checks eligibility against the lists each catalog was
// built with.
func TestListsApplied(t *testing.T) {
	for _, release := range Releases() {
		c, err := Load(release)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Lists.Ineligible) < 90 {
			t.Errorf("%s: only %d ineligible entries", release, len(c.Lists.Ineligible))
		}
		for id, reason := range c.Lists.Ineligible {
			op, ok := c.Operation(id)
			if !ok {
				t.Errorf("%s: listed ineligible %s not in catalog", release, id)
				continue
			}
			if op.Eligibility != Ineligible {
				t.Errorf("%s: listed ineligible %s is %s", release, id, op.Eligibility)
			}
			if op.Level == Stable && !op.Deprecated && op.IneligibleReason != reason {
				t.Errorf("%s: %s reason %q, want %q", release, id, op.IneligibleReason, reason)
			}
		}
		for _, id := range c.Lists.Pending {
			op, ok := c.Operation(id)
			if !ok {
				t.Errorf("%s: pending %s not in catalog", release, id)
				continue
			}
			if op.Level == Stable && op.Eligibility != Pending {
				t.Errorf("%s: pending %s is %s", release, id, op.Eligibility)
			}
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, release := range Releases() {
		compressed, err := embedded.ReadFile(path.Join("data", release+dataSuffix))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(release, func(b *testing.B) {
			retained := retainedBytes(b, release)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := loadUncached(release); err != nil {
					b.Fatal(err)
				}
			}
			// After the loop: b.Loop resets the timer, which drops metrics
			// reported before it.
			b.ReportMetric(float64(len(compressed)), "embedded-bytes")
			b.ReportMetric(float64(retained), "retained-bytes")
		})
	}
}

// retainedBytes measures the heap a loaded catalog keeps alive.
func retainedBytes(b *testing.B, release string) uint64 {
	// Warm up first: the zstd decoder and its buffers are shared by all
	// releases and not part of a catalog.
	if _, err := loadUncached(release); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := loadUncached(release)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

// TestEmbeddedDecodeIsDecode requires the embedded catalogs' decoder to
// give exactly what Decode gives, for every release.
func TestEmbeddedDecodeIsDecode(t *testing.T) {
	for _, release := range Releases() {
		compressed, err := embedded.ReadFile(path.Join("data", release+dataSuffix))
		if err != nil {
			t.Fatal(err)
		}
		want, err := Decode(compressed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEmbedded(compressed)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decodeEmbedded differs from Decode", release)
		}
	}
}
