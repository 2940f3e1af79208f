package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"apisnoop.dev/kube-apisnoop/internal/procstat"
)

// saturatingClients is how many requests are in flight when throughput is
// measured: enough to keep the API server busy whether or not a proxy adds
// latency, over one HTTP/2 connection as client-go keeps one. Latency is
// measured apart, one request at a time, so that it shows what the proxy
// adds to a request rather than how long requests queue.
const saturatingClients = 16

// BenchmarkSidecarThroughput compares GET of one ConfigMap and LIST of 100,
// straight to the suite's API server ("direct"), through the real snoop-proxy
// binary configured as a sidecar (the byte relay, the client's own token
// forwarded), and
// through a bare Go reverse proxy with the same runtime settings ("bare",
// testdata/bareproxy), which separates what recording costs from what
// proxying in Go costs at all. All sides run in alternating rounds in one
// run, so drift of a shared machine falls on each. b.N is the number of
// requests per side and phase.
//
// It reports requests/s at saturation and the ratios, p50 and p99 of single
// requests, and the CPU time per request of the API server (with etcd), the
// sidecar and the bare proxy.
//
// With APISNOOP_BENCH_PIN=1 the API server and etcd get CPU 0 and the client
// and the proxies CPU 1, as in a cluster, where the API server does not share
// the pod's CPUs; without it, all of them compete for every CPU. With
// APISNOOP_BENCH_PROFILE_DIR set, the sidecar's CPU profile of each
// sub-benchmark is written there.
//
// Run with: go test ./test/proxy -run '^$' -bench SidecarThroughput -benchtime 4000x
func BenchmarkSidecarThroughput(b *testing.B) {
	if testEnv == nil {
		startSuiteForBenchmark(b)
	}
	sc := startSidecar(b)
	defer sc.stop()
	bare := startProxyBinary(b, "./test/proxy/testdata/bareproxy")
	defer bare.stop()
	controlPlane := controlPlanePIDs(b)
	if os.Getenv("APISNOOP_BENCH_PIN") != "" {
		pinForBenchmark(b, controlPlane, sc.pid, bare.pid)
	}
	ns := benchNamespace(b)

	directURL := strings.TrimSuffix(directConfig.Host, "/")
	direct := h2Client(b, directConfig)
	h2 := func(p *sidecar) *http.Client {
		t := p.client.Transport.(*http.Transport).Clone()
		t.ForceAttemptHTTP2 = true
		return &http.Client{Transport: t, Timeout: 10 * time.Second}
	}

	for _, op := range []struct{ name, path string }{
		{"get", "/api/v1/namespaces/" + ns + "/configmaps/cm-042"},
		{"list-100", "/api/v1/namespaces/" + ns + "/configmaps"},
	} {
		b.Run(op.name, func(b *testing.B) {
			sides := []*sideLoad{
				{client: direct, url: directURL + op.path, server: controlPlane},
				{client: h2(sc), url: sc.url + op.path, server: controlPlane, proxy: sc.pid},
				{client: h2(bare), url: bare.url + op.path, server: controlPlane, proxy: bare.pid},
			}
			d, s, p := sides[0], sides[1], sides[2]
			profiled := profileSidecar(b, sc, op.name)
			const rounds = 10
			per := max(1, b.N/rounds)
			for round := range rounds {
				// Rotate who goes first, so warm-up and drift are shared.
				for i := range sides {
					sides[(round+i)%len(sides)].saturate(b, per)
				}
			}
			for round := range rounds {
				for i := range sides {
					sides[(round+i)%len(sides)].oneAtATime(b, per)
				}
			}
			<-profiled
			b.ReportMetric(d.rate(), "direct-req/s")
			b.ReportMetric(s.rate(), "sidecar-req/s")
			b.ReportMetric(p.rate(), "bare-req/s")
			b.ReportMetric(s.rate()/d.rate(), "sidecar/direct")
			b.ReportMetric(p.rate()/d.rate(), "bare/direct")
			b.ReportMetric(d.percentile(0.50), "direct-p50-µs")
			b.ReportMetric(s.percentile(0.50), "sidecar-p50-µs")
			b.ReportMetric(d.percentile(0.99), "direct-p99-µs")
			b.ReportMetric(s.percentile(0.99), "sidecar-p99-µs")
			b.ReportMetric(p.percentile(0.99), "bare-p99-µs")
			b.ReportMetric(s.percentile(0.99)-d.percentile(0.99), "added-p99-µs")
			b.ReportMetric(d.serverCPUPerRequest(), "server-cpu-µs/req")
			b.ReportMetric(s.proxyCPUPerRequest(), "sidecar-cpu-µs/req")
			b.ReportMetric(p.proxyCPUPerRequest(), "bare-cpu-µs/req")
		})
	}
}

// sideLoad is one side of the comparison. It accumulates the throughput
// phase's requests, busy time and the CPU the API server (with etcd) and the
// proxy spent, and the latency phase's latencies.
type sideLoad struct {
	client *http.Client
	url    string
	server []int
	proxy  int // 0: no proxy

	saturated           int
	busy                time.Duration
	latencies           []time.Duration
	serverCPU, proxyCPU time.Duration
}

// saturate sends n GETs of url from saturatingClients goroutines.
func (l *sideLoad) saturate(b *testing.B, n int) {
	start := time.Now()
	l.measureCPU(b, func() { l.send(b, n, saturatingClients, nil) })
	l.busy += time.Since(start)
	l.saturated += n
}

// oneAtATime sends n GETs of url one after the other and keeps latencies.
func (l *sideLoad) oneAtATime(b *testing.B, n int) {
	l.send(b, n, 1, &l.latencies)
}

func (l *sideLoad) send(b *testing.B, n, clients int, latencies *[]time.Duration) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan struct{}, n)
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range clients {
		wg.Go(func() {
			local := make([]time.Duration, 0, n/clients+1)
			for range next {
				began := time.Now()
				if err := getOK(l.client, l.url); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(began))
			}
			if latencies != nil {
				mu.Lock()
				*latencies = append(*latencies, local...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func (l *sideLoad) measureCPU(b *testing.B, run func()) {
	serverBefore, proxyBefore := l.cpu(b)
	run()
	serverAfter, proxyAfter := l.cpu(b)
	l.serverCPU += serverAfter - serverBefore
	l.proxyCPU += proxyAfter - proxyBefore
}

func (l *sideLoad) cpu(b *testing.B) (server, proxy time.Duration) {
	for _, pid := range l.server {
		server += cpuTime(b, pid)
	}
	if l.proxy != 0 {
		proxy = cpuTime(b, l.proxy)
	}
	return server, proxy
}

func (l *sideLoad) serverCPUPerRequest() float64 {
	return float64(l.serverCPU.Microseconds()) / float64(l.saturated)
}

func (l *sideLoad) proxyCPUPerRequest() float64 {
	return float64(l.proxyCPU.Microseconds()) / float64(l.saturated)
}

func (l *sideLoad) rate() float64 {
	return float64(l.saturated) / l.busy.Seconds()
}

func (l *sideLoad) percentile(p float64) float64 {
	if len(l.latencies) == 0 {
		return 0
	}
	slices.Sort(l.latencies)
	return float64(l.latencies[int(p*float64(len(l.latencies)-1))].Microseconds())
}

func getOK(client *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// h2Client speaks HTTP/2 to the API server with cfg's CA, as client-go does;
// the token is set per request.
func h2Client(b *testing.B, cfg *rest.Config) *http.Client {
	tlsCfg, err := rest.TLSConfigFor(&rest.Config{TLSClientConfig: cfg.TLSClientConfig})
	if err != nil {
		b.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
}

// benchNamespace makes a namespace with 100 small ConfigMaps.
func benchNamespace(b *testing.B) string {
	cfg := rest.CopyConfig(directConfig)
	cfg.QPS, cfg.Burst = 1000, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		if _, err := cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i)},
			Data:       map[string]string{"key": "a small value of some forty characters.."},
		}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return ns.Name
}

// pinForBenchmark gives the control plane CPU 0, and this process and the
// proxies CPU 1.
func pinForBenchmark(b *testing.B, controlPlane []int, proxies ...int) {
	if runtime.NumCPU() < 2 {
		b.Skip("pinning needs two CPUs")
	}
	for _, pid := range controlPlane {
		pinProcess(b, pid, 0)
	}
	pinProcess(b, os.Getpid(), 1)
	for _, pid := range proxies {
		pinProcess(b, pid, 1)
	}
}

// controlPlanePIDs finds this process's kube-apiserver and etcd children.
func controlPlanePIDs(b *testing.B) []int {
	pids, err := procstat.Children(os.Getpid(), "kube-apiserver", "etcd")
	if err != nil {
		b.Fatal(err)
	}
	if len(pids) != 2 {
		b.Fatalf("found %d control-plane processes, want kube-apiserver and etcd", len(pids))
	}
	return pids
}

// pinProcess sets the affinity of every thread of pid; threads made later
// inherit it from the thread that makes them.
func pinProcess(b *testing.B, pid, cpu int) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			b.Fatalf("pin thread %d of %d to CPU %d: %v", tid, pid, cpu, err)
		}
	}
}

// cpuTime is the user and system CPU time pid has used.
func cpuTime(b *testing.B, pid int) time.Duration {
	st, err := procstat.ReadStat(pid)
	if err != nil {
		b.Fatal(err)
	}
	return st.CPU()
}

// profileSidecar writes a CPU profile of the sidecar's first seconds of the
// load to $APISNOOP_BENCH_PROFILE_DIR/sidecar-NAME.pprof when that is set.
func profileSidecar(b *testing.B, sc *sidecar, name string) <-chan struct{} {
	done := make(chan struct{})
	dir := os.Getenv("APISNOOP_BENCH_PROFILE_DIR")
	if dir == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		resp, err := http.Get(sc.results + "/debug/pprof/profile?seconds=5")
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		out, err := os.Create(filepath.Join(dir, "sidecar-"+name+".pprof"))
		if err != nil {
			b.Error(err)
			return
		}
		defer out.Close()
		_, _ = io.Copy(out, resp.Body)
	}()
	return done
}
