package match

import (
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// benchmarkRequests is a realistic mix of controller and kubelet traffic.
var benchmarkRequests = []struct{ method, path, query string }{
	{"GET", "/api/v1/namespaces/kube-system/pods/coredns-5d78c9869d-abcde", ""},
	{"GET", "/api/v1/namespaces/default/pods", "labelSelector=app%3Dweb&limit=500"},
	{"GET", "/api/v1/pods", "allowWatchBookmarks=true&resourceVersion=12345&timeout=7m36s&timeoutSeconds=456&watch=true"},
	{"GET", "/apis/apps/v1/namespaces/default/deployments", "allowWatchBookmarks=true&resourceVersion=9&watch=true"},
	{"PATCH", "/api/v1/namespaces/default/pods/web-0/status", ""},
	{"PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1", ""},
	{"POST", "/api/v1/namespaces/default/events", ""},
	{"GET", "/apis/apps/v1", ""},
	{"GET", "/api", ""},
	{"GET", "/healthz", ""},
	{"GET", "/apis/example.com/v1/namespaces/default/widgets/w", ""},
	{"DELETE", "/api/v1/namespaces/default/configmaps/cm", ""},
	{"GET", "/api/v1/nodes", "fieldSelector=spec.unschedulable%3Dfalse&limit=500"},
	{"GET", "/api/v1/namespaces/default/services/web:80/proxy/metrics", ""},
}

func BenchmarkMatch(b *testing.B) {
	m := loadMatcher(b, "1.37")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := benchmarkRequests[n%len(benchmarkRequests)]
		m.Match(r.method, r.path, r.query)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "matches/s")
}

// BenchmarkMatchEach shows each request of the mix on its own.
func BenchmarkMatchEach(b *testing.B) {
	m := loadMatcher(b, "1.37")
	for _, r := range benchmarkRequests {
		b.Run(r.method+r.path, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				m.Match(r.method, r.path, r.query)
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "matches/s")
		})
	}
}

// BenchmarkFactory is the API server's RequestInfoFactory on the same mix,
// for comparison (it only computes the RequestInfo).
func BenchmarkFactory(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := benchmarkRequests[n%len(benchmarkRequests)]
		factoryInfo(r.method, r.path, r.query)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "matches/s")
}

func BenchmarkNew(b *testing.B) {
	for _, release := range catalog.Releases() {
		c, err := catalog.Load(release)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(release, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				New(c)
			}
		})
	}
}

// BenchmarkMatchFieldSelectorName is the rare path that allocates: a list
// or watch of a single object by fieldSelector=metadata.name=<name>, which
// needs the factory's own ListOptions decoding.
func BenchmarkMatchFieldSelectorName(b *testing.B) {
	m := loadMatcher(b, "1.37")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m.Match("GET", "/api/v1/nodes", "fieldSelector=metadata.name%3Dnode-1&resourceVersion=1&watch=true")
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "matches/s")
}

// TestMatchDoesNotAllocate keeps the common path allocation-free.
func TestMatchDoesNotAllocate(t *testing.T) {
	m := loadMatcher(t, "1.37")
	for _, r := range benchmarkRequests {
		if allocs := testing.AllocsPerRun(100, func() { m.Match(r.method, r.path, r.query) }); allocs != 0 {
			t.Errorf("%s %s?%s: %v allocations", r.method, r.path, r.query, allocs)
		}
	}
}
