// Package admission_test measures what the pod webhook adds to the latency
// of pod creation through the real API server, with the whole operator
// running as internal/manager wires it.
//
// Run with:
//
//	go test ./test/admission -run '^$' -bench Admission -benchtime 300x
//
// -benchtime Nx creates N pods of each kind; any other -benchtime creates
// defaultPods of each. Without -bench, `go test` runs only the unit tests of
// the percentile arithmetic and starts no control plane. The control plane
// binaries come from internal/testenv; when they are missing the benchmark
// is skipped, or fails if the environment variable CI is set.
package admission_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

const (
	// defaultPods is how many pods of each kind are created when
	// -benchtime does not say (Nx).
	defaultPods = 300
	// roundsPerBatch rounds (one create of each kind) run between
	// deletions of every benchmark pod, so etcd stays small.
	roundsPerBatch = 25
	// warmupRounds are created and thrown away first: the API server's
	// connection to the webhook, the clients' connections and the caches
	// are made before anything is timed.
	warmupRounds = 10
	// targetAddedP99 is what the webhook may add to a pod CREATE at p99.
	targetAddedP99 = 5 * time.Millisecond
)

var (
	setupOnce sync.Once
	started   *cluster      // for TestMain to stop, even when setup failed later
	bench     *benchCluster // once setup succeeded
	errSetup  error

	appLabels   = map[string]string{"app": "demo"}
	otherLabels = map[string]string{"app": "other"}
)

// TestMain stops the control plane the benchmark started, once, after every
// run of it (-count), which shares it.
func TestMain(m *testing.M) {
	code := m.Run()
	if started != nil {
		if err := started.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// podKind is one way a pod CREATE meets the webhook, and its timings.
type podKind struct {
	name      string
	namespace string
	injected  bool // the pod must come back with the proxy
	took      []time.Duration
}

// BenchmarkPodAdmission compares the wall time of pod CREATEs, as a client
// sees them, in three namespaces that differ only in what the webhook does:
//
//   - injected: a session selects the pods; the webhook is called and
//     injects the proxy (every pod is checked to come back injected).
//   - excluded: the namespace carries snoop.apisnoop.dev/ignore, so the
//     webhook configuration's namespaceSelector keeps the API server from
//     calling the webhook at all. This is the baseline.
//   - notselected: the webhook is called, but the namespace's only session
//     selects other pods, so it admits the pod unchanged.
//
// Each namespace has the same kube-root-ca.crt and one Ready session, and
// every pod is the same. The kinds alternate one create at a time, the
// first of each round rotating, so that drift of a shared machine falls on
// all of them; pods are created one at a time, so the figures are latency,
// not queueing. Every roundsPerBatch rounds the pods are deleted (untimed).
//
// It reports p50 and p99 in ms of each kind, and the added p50 and p99 of
// injected and notselected over excluded (a difference of percentiles, not
// a percentile of differences), against a target of under 5 ms added p99.
// webhook-handler-us is the mean time in the webhook's HTTP handler, as
// controller-runtime's histogram has it, which tells the handler's own work
// from the API server's call to it.
func BenchmarkPodAdmission(b *testing.B) {
	c := clusterFor(b)
	kinds := []*podKind{
		{name: "injected", namespace: c.injectedNS, injected: true},
		{name: "excluded", namespace: c.excludedNS},
		{name: "notselected", namespace: c.notSelectedNS},
	}
	n := podsPerKind(b)
	callsBefore, handlerBefore := webhookMetrics(b)

	for i := range warmupRounds + n {
		if i == warmupRounds {
			for _, k := range kinds {
				k.took = make([]time.Duration, 0, n)
			}
			b.ResetTimer()
		}
		for j := range kinds {
			k := kinds[(i+j)%len(kinds)]
			took := c.createPod(b, k)
			if i >= warmupRounds {
				k.took = append(k.took, took)
			}
		}
		if (i+1)%roundsPerBatch == 0 || i == warmupRounds+n-1 {
			b.StopTimer()
			c.deletePods(b, kinds)
			b.StartTimer()
		}
	}
	b.StopTimer()

	// The API server called the webhook for every injected and notselected
	// pod, and for no excluded one.
	callsAfter, handlerAfter := webhookMetrics(b)
	if got, want := callsAfter-callsBefore, 2*(warmupRounds+n); got != want {
		b.Fatalf("the webhook was called %d times for %d pods of each kind, want %d (injected and notselected, not excluded)", got, warmupRounds+n, want)
	}
	handlerMean := (handlerAfter - handlerBefore).Seconds() / float64(callsAfter-callsBefore)

	b.ReportMetric(0, "ns/op") // a round mixes the kinds; the percentiles say it
	p := map[string][2]float64{}
	for _, k := range kinds {
		p50, p99 := ms(percentile(k.took, 50)), ms(percentile(k.took, 99))
		p[k.name] = [2]float64{p50, p99}
		b.ReportMetric(p50, k.name+"-p50-ms")
		b.ReportMetric(p99, k.name+"-p99-ms")
	}
	for _, name := range []string{"injected", "notselected"} {
		b.ReportMetric(p[name][0]-p["excluded"][0], "added-"+name+"-p50-ms")
		b.ReportMetric(p[name][1]-p["excluded"][1], "added-"+name+"-p99-ms")
	}
	b.ReportMetric(handlerMean*1e6, "webhook-handler-us")
	if n == 1 {
		return // the testing package's first probe of -benchtime Nx
	}
	b.Logf("%d pods of each kind; added p99 (target < %v): injected %.2f ms, notselected %.2f ms",
		n, targetAddedP99, p["injected"][1]-p["excluded"][1], p["notselected"][1]-p["excluded"][1])
}

// benchCluster is the shared cluster and its three namespaces.
type benchCluster struct {
	*cluster
	injectedNS, excludedNS, notSelectedNS string
}

// clusterFor starts the control plane, the manager and the namespaces once
// per process, and waits until pods in the injected namespace come back
// injected: the first pods of a new session are admitted unrecorded until
// the operator has written the namespace's trust objects.
func clusterFor(b *testing.B) *benchCluster {
	b.Helper()
	if _, err := testenv.BinaryDir(); err != nil {
		b.Fatal(err) // missing control-plane binaries fail, as in every suite
	}
	setupOnce.Do(func() {
		ctrllog.SetLogger(logr.Discard())
		ctx := context.Background()
		started, errSetup = startCluster(ctx)
		if errSetup != nil {
			return
		}
		bc := &benchCluster{cluster: started}
		if bc.injectedNS, errSetup = bc.targetNamespace(ctx, "injected", nil, appLabels); errSetup != nil {
			return
		}
		if bc.excludedNS, errSetup = bc.targetNamespace(ctx, "excluded", map[string]string{snoopv1alpha1.IgnoreLabel: ""}, appLabels); errSetup != nil {
			return
		}
		if bc.notSelectedNS, errSetup = bc.targetNamespace(ctx, "notselected", nil, otherLabels); errSetup != nil {
			return
		}
		errSetup = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, setupTimeout, true, func(ctx context.Context) (bool, error) {
			pod := appPod(bc.injectedNS)
			if err := bc.client.Create(ctx, pod); err != nil {
				return false, err
			}
			return isInjected(pod), nil
		})
		if errSetup != nil {
			errSetup = fmt.Errorf("wait for pods in %s to be injected: %w", bc.injectedNS, errSetup)
			return
		}
		bench = bc
	})
	if errSetup != nil {
		b.Fatal(errSetup)
	}
	return bench
}

// createPod creates one pod of kind k, checks that the webhook did to it
// what kind k expects, and returns the wall time of the CREATE.
func (c *benchCluster) createPod(b *testing.B, k *podKind) time.Duration {
	pod := appPod(k.namespace)
	start := time.Now()
	err := c.client.Create(b.Context(), pod)
	took := time.Since(start)
	if err != nil {
		b.Fatalf("create pod in %s: %v", k.namespace, err)
	}
	if isInjected(pod) != k.injected {
		b.Fatalf("%s pod %s/%s came back with init containers %v, want injected=%t", k.name, pod.Namespace, pod.Name, initNames(pod), k.injected)
	}
	return took
}

// deletePods deletes every pod of the benchmark. Pods on no node go at
// once, without a grace period.
func (c *benchCluster) deletePods(b *testing.B, kinds []*podKind) {
	for _, k := range kinds {
		if err := c.client.DeleteAllOf(b.Context(), &corev1.Pod{}, client.InNamespace(k.namespace)); err != nil {
			b.Fatalf("delete pods in %s: %v", k.namespace, err)
		}
	}
}

func appPod(ns string) *corev1.Pod { return testenv.AppPod(ns, appLabels) }

func isInjected(pod *corev1.Pod) bool {
	return slices.Contains(initNames(pod), targets.ProxyContainerName)
}

func initNames(pod *corev1.Pod) []string {
	var out []string
	for _, c := range pod.Spec.InitContainers {
		out = append(out, c.Name)
	}
	return out
}

// podsPerKind is N of -benchtime Nx, else defaultPods: with a duration the
// testing package would start at b.N = 1 and stop there, one round taking
// longer than the default second.
func podsPerKind(b *testing.B) int {
	if f := flag.Lookup("test.benchtime"); f != nil && strings.HasSuffix(f.Value.String(), "x") {
		return b.N
	}
	return defaultPods
}

// webhookMetrics reads, from controller-runtime's registry in this process,
// how many requests the pod webhook has served and the total time its
// handler took.
func webhookMetrics(b *testing.B) (calls int, handler time.Duration) {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		b.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			ours := false
			for _, l := range m.GetLabel() {
				ours = ours || l.GetName() == "webhook" && l.GetValue() == webhook.Path
			}
			if !ours {
				continue
			}
			switch f.GetName() {
			case "controller_runtime_webhook_requests_total":
				calls += int(m.GetCounter().GetValue())
			case "controller_runtime_webhook_latency_seconds":
				handler += time.Duration(m.GetHistogram().GetSampleSum() * float64(time.Second))
			}
		}
	}
	return calls, handler
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of ds: the
// smallest value that at least p% of ds are at or below. ds is sorted in
// place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	return ds[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // unsorted
	}
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{7}, 99, 7},
		{"p50 of two is the lower", []time.Duration{2, 1}, 50, 1},
		{"p99 of two is the higher", []time.Duration{2, 1}, 99, 2},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p100 of 100", hundred, 100, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(slices.Clone(tc.ds), tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}
