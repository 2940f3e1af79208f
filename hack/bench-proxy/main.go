// Command bench-proxy measures, side by side in one run, what a proxy in
// front of the API server costs: one kube-apiserver and etcd on loopback
// (internal/testenv), and in front of it snoop-proxy (recording), kubectl
// proxy and mitmproxy's mitmdump, each loaded with GETs of one ConfigMap and
// LISTs of 100 ConfigMaps at 1 and 16 connections, next to the same load sent
// to the API server directly. For each it reports requests per second, p50
// and p99 latency, the CPU the proxy and the API server spent per request
// (utime+stime from /proc/PID/stat before and after the load, divided by the
// requests) and the proxies' resident memory after the load. hack/bench-proxy.sh
// builds what it needs and runs it.
//
// Every phase is bounded by a request count and a duration; all traffic
// stays on loopback.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"

	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/procstat"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// token authenticates every client through the API server's static token
// file: a bearer token, unlike a client certificate, passes a proxy that
// terminates TLS, as a pod's service account token does.
const token = "bench-proxy-admin-token"

type options struct {
	snoopProxy, kubectl, mitmdump string
	bare, relay                   string
	compare                       []string // name=binary
	requests                      int
	duration                      time.Duration
	warmup                        int
	rounds                        int
	conns                         []int
	http2                         bool
	profileDir                    string
	only                          string
}

func main() {
	var o options
	var conns string
	flag.StringVar(&o.snoopProxy, "snoop-proxy", "", "snoop-proxy binary (required)")
	flag.Func("compare", "NAME=BINARY: another snoop-proxy build (e.g. an earlier commit's) to run next to it; repeatable", func(v string) error {
		if name, bin, ok := strings.Cut(v, "="); !ok || name == "" || bin == "" {
			return errors.New("want NAME=BINARY")
		}
		o.compare = append(o.compare, v)
		return nil
	})
	flag.StringVar(&o.bare, "bare", "", "a bare Go reverse proxy binary (test/proxy/testdata/bareproxy): the floor of proxying in Go, run with the sidecar's runtime settings; empty leaves it out")
	flag.StringVar(&o.relay, "relay", "", "a TLS byte relay binary (test/proxy/testdata/relayfloor): the floor of any TLS-terminating proxy in Go, below net/http, the client's protocol negotiated upstream, run with the sidecar's runtime settings; empty leaves it out")
	flag.StringVar(&o.kubectl, "kubectl", "", "kubectl binary for kubectl proxy; empty leaves it out")
	flag.StringVar(&o.mitmdump, "mitmdump", "", "mitmdump binary; empty leaves mitmproxy out")
	flag.IntVar(&o.requests, "requests", 20000, "at most this many measured requests per phase")
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "at most this long per measured phase")
	flag.IntVar(&o.warmup, "warmup", 200, "unmeasured requests before each phase")
	flag.IntVar(&o.rounds, "rounds", 1, "phases per target, interleaved; figures are over all rounds")
	flag.StringVar(&conns, "conns", "1,16", "connection counts, comma-separated")
	flag.BoolVar(&o.http2, "http2", false, "clients speak HTTP/2 where the proxy offers it (default HTTP/1.1, one request per connection at a time, as wrk)")
	flag.StringVar(&o.only, "only", "", "comma-separated targets to run (direct, snoop-proxy, snoop-reverse: the sidecar with --relay=false, bare, relay, kubectl, mitmproxy); empty runs all")
	flag.StringVar(&o.profileDir, "profile-dir", "", "write CPU profiles of snoop-proxy under the 16-connection loads here")
	flag.Parse()
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 256 {
			fail(fmt.Errorf("bad -conns %q", conns))
		}
		o.conns = append(o.conns, n)
	}
	if o.snoopProxy == "" {
		fail(errors.New("-snoop-proxy is required"))
	}
	ctrllog.SetLogger(logr.Discard())
	if err := run(o); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-proxy:", err)
	os.Exit(1)
}

func say(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }

// target is one way to the API server.
type target struct {
	name    string
	url     string
	pid     int // the proxy's process; 0 for direct
	tls     *tls.Config
	noToken bool // the proxy adds the credentials itself (kubectl proxy)
	h2      bool // the target speaks HTTP/2 over TLS
	results string

	samples map[string]*sample // by phase
}

// sample accumulates one phase of one target over the rounds.
type sample struct {
	requests  int
	busy      time.Duration
	latencies []time.Duration
	proxyCPU  time.Duration
	proxySys  time.Duration
	serverCPU time.Duration
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,bench-admin,1000,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	say("starting kube-apiserver and etcd")
	cp, err := testenv.Start(testenv.WithAPIServerFlag("token-auth-file", tokens))
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	apiServerPID, err := childPID("kube-apiserver")
	if err != nil {
		return err
	}
	upstream := strings.TrimSuffix(cp.Config.Host, "/")
	if !strings.Contains(upstream, "://") {
		upstream = "https://" + upstream
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, cp.Config.CAData, 0o600); err != nil {
		return err
	}
	apiRoots := x509.NewCertPool()
	apiRoots.AppendCertsFromPEM(cp.Config.CAData)

	ns, err := cp.Namespace(context.Background(), "bench", nil)
	if err != nil {
		return err
	}
	say("creating 100 ConfigMaps in %s", ns)
	for i := range 100 {
		if err := cp.Client.Create(context.Background(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i), Namespace: ns},
			Data:       map[string]string{"key": "a small value of some forty characters.."},
		}); err != nil {
			return err
		}
	}

	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	targets := []*target{{name: "direct", url: upstream, tls: &tls.Config{RootCAs: apiRoots}, h2: true}}

	wanted := func(name string) bool {
		return o.only == "" || slices.Contains(strings.Split(o.only, ","), name)
	}
	if !wanted("direct") {
		targets = nil
	}
	sink, err := startCollectorSink(dir)
	if err != nil {
		return err
	}
	defer sink.close()
	// add keeps a started target, and its process to stop at the end.
	add := func(t *target, cmd *exec.Cmd, err error) error {
		if err != nil {
			return err
		}
		procs = append(procs, cmd)
		targets = append(targets, t)
		return nil
	}
	if wanted("snoop-proxy") {
		if err := add(startSnoopProxy(o.snoopProxy, dir, upstream, caFile, sink)); err != nil {
			return err
		}
	}
	if wanted("snoop-reverse") {
		reverse, cmd, err := startSnoopProxy(o.snoopProxy, dir, upstream, caFile, sink, "--relay=false")
		if err == nil {
			reverse.name = "snoop reverse"
		}
		if err := add(reverse, cmd, err); err != nil {
			return err
		}
	}
	for _, c := range o.compare {
		name, bin, _ := strings.Cut(c, "=")
		other, cmd, err := startSnoopProxy(bin, dir, upstream, caFile, sink)
		if err == nil {
			other.name = name
		}
		if err := add(other, cmd, err); err != nil {
			return err
		}
	}
	if o.bare != "" && wanted("bare") {
		if err := add(startFloor(o.bare, "bare Go proxy", dir, upstream, caFile)); err != nil {
			return err
		}
	}
	if o.relay != "" && wanted("relay") {
		if err := add(startFloor(o.relay, "TLS relay", dir, upstream, caFile)); err != nil {
			return err
		}
	}
	if o.kubectl != "" && wanted("kubectl") {
		if err := add(startKubectlProxy(o.kubectl, dir, upstream, cp.Config.CAData)); err != nil {
			return err
		}
	}
	if o.mitmdump != "" && wanted("mitmproxy") {
		if err := add(startMitmdump(o.mitmdump, dir, upstream, caFile)); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if err := waitServing(t, "/api/v1/namespaces/"+ns+"/configmaps/cm-042", 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		t.samples = map[string]*sample{}
	}

	ops := []struct{ name, path string }{
		{"GET", "/api/v1/namespaces/" + ns + "/configmaps/cm-042"},
		{"LIST-100", "/api/v1/namespaces/" + ns + "/configmaps"},
	}
	var phases []string
	for round := range o.rounds {
		for _, op := range ops {
			for _, conns := range o.conns {
				phase := fmt.Sprintf("%s %d", op.name, conns)
				if round == 0 {
					phases = append(phases, phase)
				}
				// Rotate who goes first, so warm-up and drift are shared.
				for i := range targets {
					t := targets[(round+i)%len(targets)]
					say("round %d: %s, %d connections, %s", round+1, op.name, conns, t.name)
					profile := func() {}
					if o.profileDir != "" && t.results != "" && conns >= 16 && round == 0 {
						profile = startProfile(t, filepath.Join(o.profileDir, fmt.Sprintf("%s-%s-%d.pprof", t.name, op.name, conns)), o.duration)
					}
					s := t.samples[phase]
					if s == nil {
						s = &sample{}
						t.samples[phase] = s
					}
					if err := load(o, t, op.path, conns, apiServerPID, s); err != nil {
						return fmt.Errorf("%s %s: %w", t.name, phase, err)
					}
					profile()
				}
			}
		}
	}

	report(os.Stdout, o, targets, phases, apiServerPID)
	time.Sleep(1500 * time.Millisecond) // the last ship
	fmt.Printf("collector sink: %d batches, %d requests shipped by the snoop-proxy builds\n", sink.batches.Load(), sink.requests.Load())
	return nil
}

// load sends warm-up requests, then measures one phase: conns workers, each
// with a connection of its own, sending requests one after the other until
// o.requests are done or o.duration is over.
func load(o options, t *target, path string, conns, apiServerPID int, s *sample) error {
	clients := make([]*http.Client, conns)
	for i := range clients {
		clients[i] = t.client(o.http2)
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	url := t.url + path
	var firstErr error
	var errOnce sync.Once
	var next atomic.Int64
	work := func(limit int64, deadline time.Time, keep *[][]time.Duration) {
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Go(func() {
				var local []time.Duration
				for next.Add(1) <= limit && time.Now().Before(deadline) {
					began := time.Now()
					if err := t.get(c, url); err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					local = append(local, time.Since(began))
				}
				if keep != nil {
					(*keep)[i] = local
				}
			})
		}
		wg.Wait()
	}
	work(int64(o.warmup), time.Now().Add(o.duration), nil)
	if firstErr != nil {
		return firstErr
	}
	next.Store(0)
	kept := make([][]time.Duration, conns)
	proxyBefore, serverBefore := cpuTime(t.pid), cpuTime(apiServerPID)
	sysBefore := sysTime(t.pid)
	began := time.Now()
	work(int64(o.requests), began.Add(o.duration), &kept)
	busy := time.Since(began)
	proxyAfter, serverAfter := cpuTime(t.pid), cpuTime(apiServerPID)
	s.proxySys += sysTime(t.pid) - sysBefore
	if firstErr != nil {
		return firstErr
	}
	for _, l := range kept {
		s.latencies = append(s.latencies, l...)
		s.requests += len(l)
	}
	s.busy += busy
	s.proxyCPU += proxyAfter - proxyBefore
	s.serverCPU += serverAfter - serverBefore
	return nil
}

// client has a connection of its own to the target.
func (t *target) client(http2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:     t.tls.Clone(),
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true, // the client asks for no gzip, as wrk
	}
	if t.tls != nil && http2 && t.h2 {
		tr.ForceAttemptHTTP2 = true
	} else if t.tls != nil {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (t *target) get(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if !t.noToken {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
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

func waitServing(t *target, path string, limit time.Duration) error {
	c := t.client(false)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	for {
		err := t.get(c, t.url+path)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s: %w", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startSnoopProxy runs snoop-proxy as the webhook runs the sidecar: TLS,
// the client's token forwarded, recording against the embedded 1.37
// catalog, shipping a delta to the collector every second.
func startSnoopProxy(bin, dir, upstream, caFile string, sink *collectorSink, extra ...string) (*target, *exec.Cmd, error) {
	certFile, keyFile, roots, err := servingCert(dir, filepath.Base(bin)+"-"+freePort())
	if err != nil {
		return nil, nil, err
	}
	port, adminPort, resultsPort := freePort(), freePort(), freePort()
	cmd := exec.Command(bin,
		"--listen", "127.0.0.1:"+port, "--admin-listen", "127.0.0.1:"+adminPort, "--results-listen", "127.0.0.1:"+resultsPort,
		"--upstream", upstream, "--upstream-ca-file", caFile, "--cert-file", certFile, "--key-file", keyFile,
		"--pod-name", "bench-0", "--pod-namespace", "default", "--service-account", "bench", "--release", "1.37", "--profiling",
		"--collector", sink.url, "--collector-ca-file", sink.caFile, "--collector-token-file", sink.tokenFile, "--ship-interval", "1s",
		"--source", strings.TrimSuffix(filepath.Base(certFile), ".crt"))
	cmd.Args = append(cmd.Args, extra...)
	if err := start(cmd, dir, filepath.Base(certFile)); err != nil {
		return nil, nil, err
	}
	return &target{name: "snoop-proxy", url: "https://127.0.0.1:" + port, pid: cmd.Process.Pid,
		tls: &tls.Config{RootCAs: roots}, h2: true, results: "http://127.0.0.1:" + resultsPort}, cmd, nil
}

// collectorSink takes the sidecars' delta batches as the collector's intake
// does, reading each with intake.ReadRequest (the collector's own reader),
// and counts them; the sidecars' memory then includes shipping, as in a pod.
type collectorSink struct {
	url, caFile, tokenFile string
	batches, requests      atomic.Int64
	server                 *http.Server
}

func startCollectorSink(dir string) (*collectorSink, error) {
	certFile, keyFile, _, err := servingCert(dir, "collector")
	if err != nil {
		return nil, err
	}
	s := &collectorSink{caFile: certFile, tokenFile: filepath.Join(dir, "collector-token")}
	if err := os.WriteFile(s.tokenFile, []byte("bench-collector-token\n"), 0o600); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "https://" + ln.Addr().String() + "/intake"
	s.server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		batch, err := intake.ReadRequest(r, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.batches.Add(1)
		s.requests.Add(batch.Delta.Requests)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.server.ServeTLS(ln, certFile, keyFile) }()
	return s, nil
}

func (s *collectorSink) close() { _ = s.server.Close() }

// startFloor runs a floor of the sidecar's cost, TLS on both sides, on one
// P and the sidecar's soft memory limit: Go's httputil.ReverseProxy alone
// (what proxying costs in Go before anything is recorded), or a byte relay
// (what terminating TLS costs in Go at all). Both serve HTTP/2 and
// HTTP/1.1.
func startFloor(bin, name, dir, upstream, caFile string) (*target, *exec.Cmd, error) {
	certFile, keyFile, roots, err := servingCert(dir, filepath.Base(bin)+"-"+freePort())
	if err != nil {
		return nil, nil, err
	}
	port := freePort()
	cmd := exec.Command(bin, "--listen", "127.0.0.1:"+port, "--upstream", upstream, "--upstream-ca-file", caFile,
		"--cert-file", certFile, "--key-file", keyFile)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "GOMEMLIMIT=24MiB")
	if err := start(cmd, dir, filepath.Base(certFile)); err != nil {
		return nil, nil, err
	}
	return &target{name: name, url: "https://127.0.0.1:" + port, pid: cmd.Process.Pid,
		tls: &tls.Config{RootCAs: roots}, h2: true}, cmd, nil
}

// startKubectlProxy runs kubectl proxy with a kubeconfig holding the token;
// it serves plain HTTP and adds the credentials itself.
func startKubectlProxy(bin, dir, upstream string, ca []byte) (*target, *exec.Cmd, error) {
	kubeconfig := filepath.Join(dir, "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: bench
  user:
    token: %s
contexts:
- name: bench
  context: {cluster: bench, user: bench}
current-context: bench
`, upstream, base64.StdEncoding.EncodeToString(ca), token)
	if err := os.WriteFile(kubeconfig, []byte(content), 0o600); err != nil {
		return nil, nil, err
	}
	port := freePort()
	cmd := exec.Command(bin, "proxy", "--kubeconfig", kubeconfig, "--address", "127.0.0.1", "--port", port)
	if err := start(cmd, dir, "kubectl-proxy"); err != nil {
		return nil, nil, err
	}
	return &target{name: "kubectl proxy", url: "http://127.0.0.1:" + port, pid: cmd.Process.Pid, noToken: true}, cmd, nil
}

// startMitmdump runs mitmproxy's mitmdump as a reverse proxy: it terminates
// TLS with a certificate of its own CA (made in its configuration
// directory), verifies the API server with the cluster CA and forwards the
// client's token.
func startMitmdump(bin, dir, upstream, caFile string) (*target, *exec.Cmd, error) {
	confdir := filepath.Join(dir, "mitmproxy")
	port := freePort()
	cmd := exec.Command(bin, "--mode", "reverse:"+upstream, "--listen-host", "127.0.0.1", "--listen-port", port,
		"--set", "confdir="+confdir, "--set", "ssl_verify_upstream_trusted_ca="+caFile,
		"--set", "flow_detail=0", "--set", "termlog_verbosity=error", "-q")
	if err := start(cmd, dir, "mitmdump"); err != nil {
		return nil, nil, err
	}
	caPEM := filepath.Join(confdir, "mitmproxy-ca-cert.pem")
	deadline := time.Now().Add(30 * time.Second)
	var data []byte
	var err error
	for {
		if data, err = os.ReadFile(caPEM); err == nil && len(data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, cmd, fmt.Errorf("mitmdump wrote no CA to %s: %v", caPEM, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(data)
	return &target{name: "mitmproxy", url: "https://127.0.0.1:" + port, pid: cmd.Process.Pid,
		tls: &tls.Config{RootCAs: roots}, h2: true}, cmd, nil
}

// start starts cmd with its output in dir/name.log.
func start(cmd *exec.Cmd, dir, name string) error {
	out, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// startProfile fetches a CPU profile of snoop-proxy covering the coming
// load; the returned function waits for it.
func startProfile(t *target, file string, d time.Duration) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		seconds := max(1, int(d.Seconds()))
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.results, seconds))
		if err != nil {
			say("profile: %v", err)
			return
		}
		defer resp.Body.Close()
		out, err := os.Create(file)
		if err != nil {
			say("profile: %v", err)
			return
		}
		defer out.Close()
		_, _ = io.Copy(out, resp.Body)
	}()
	return func() { <-done }
}

func report(w io.Writer, o options, targets []*target, phases []string, apiServerPID int) {
	proto := "HTTP/1.1"
	if o.http2 {
		proto = "HTTP/2 where offered"
	}
	fmt.Fprintf(w, "\nclients: %s, one connection per worker, Accept: application/json, no Accept-Encoding; %d round(s) of at most %d requests or %s per phase\n",
		proto, o.rounds, o.requests, o.duration)
	fmt.Fprintf(w, "cpu: %s, %d cores\n\n", cpuModel(), runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tconns\tvia\trequests\treq/s\tp50 µs\tp99 µs\tproxy CPU µs/req\t(of it system)\tAPI server CPU µs/req\t")
	for _, phase := range phases {
		op, conns, _ := strings.Cut(phase, " ")
		for _, t := range targets {
			s := t.samples[phase]
			proxyCPU, proxySys := "-", "-"
			if t.pid != 0 {
				proxyCPU = fmt.Sprintf("%.1f", perRequest(s.proxyCPU, s.requests))
				proxySys = fmt.Sprintf("%.1f", perRequest(s.proxySys, s.requests))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%s\t%s\t%.1f\t\n", op, conns, t.name, s.requests,
				float64(s.requests)/s.busy.Seconds(), percentile(s.latencies, 0.50), percentile(s.latencies, 0.99),
				proxyCPU, proxySys, perRequest(s.serverCPU, s.requests))
		}
	}
	_ = tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tRSS after the load MiB\t(anonymous\tfile)\tpeak RSS MiB\t")
	for _, t := range targets {
		if t.pid == 0 {
			continue
		}
		m, _ := procstat.MemoryMiB(t.pid)
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", t.name, m["VmRSS"], m["RssAnon"], m["RssFile"], m["VmHWM"])
	}
	m, _ := procstat.MemoryMiB(apiServerPID)
	fmt.Fprintf(tw, "kube-apiserver\t%.1f\t%.1f\t%.1f\t%.1f\t\n", m["VmRSS"], m["RssAnon"], m["RssFile"], m["VmHWM"])
	_ = tw.Flush()

	// The targets, for snoop-proxy against kubectl proxy.
	byName := map[string]*target{}
	for _, t := range targets {
		byName[t.name] = t
	}
	snoop, kubectl, bare, relay := byName["snoop-proxy"], byName["kubectl proxy"], byName["bare Go proxy"], byName["TLS relay"]
	reverse := byName["snoop reverse"]
	if snoop == nil {
		return
	}
	fmt.Fprintln(w)
	for _, phase := range phases {
		s := snoop.samples[phase]
		line := fmt.Sprintf("%-12s snoop-proxy %.1f µs CPU/req", phase+":", perRequest(s.proxyCPU, s.requests))
		if kubectl != nil {
			k := kubectl.samples[phase]
			line += fmt.Sprintf(", %.2fx kubectl proxy's", perRequest(s.proxyCPU, s.requests)/perRequest(k.proxyCPU, k.requests))
		}
		if reverse != nil {
			r := reverse.samples[phase]
			line += fmt.Sprintf(", %.2fx its reverse proxy's", perRequest(s.proxyCPU, s.requests)/perRequest(r.proxyCPU, r.requests))
		}
		if bare != nil {
			b := bare.samples[phase]
			line += fmt.Sprintf(", %.2fx the bare Go proxy's", perRequest(s.proxyCPU, s.requests)/perRequest(b.proxyCPU, b.requests))
		}
		if r := relay; r != nil && kubectl != nil {
			// The floor under any TLS-terminating proxy in Go.
			rs, k := r.samples[phase], kubectl.samples[phase]
			line += fmt.Sprintf("; the TLS relay floor %.1f µs, %.2fx kubectl proxy's", perRequest(rs.proxyCPU, rs.requests),
				perRequest(rs.proxyCPU, rs.requests)/perRequest(k.proxyCPU, k.requests))
		}
		fmt.Fprintln(w, line)
	}
	rss, _ := memory(snoop.pid)
	fmt.Fprintf(w, "snoop-proxy RSS after the load: %.1f MiB (target < 20)\n", rss)
}

func perRequest(cpu time.Duration, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / 1e3 / float64(requests)
}

func percentile(latencies []time.Duration, p float64) float64 {
	if len(latencies) == 0 {
		return 0
	}
	slices.Sort(latencies)
	return float64(latencies[int(p*float64(len(latencies)-1))].Nanoseconds()) / 1e3
}

// cpuTime is the user and system CPU time pid has used; 0 for pid 0.
func cpuTime(pid int) time.Duration {
	utime, stime := times(pid)
	return utime + stime
}

// sysTime is the system part of cpuTime: mostly the kernel's work for the
// process's reads and writes (on loopback, a write also runs the receiver's
// side of TCP).
func sysTime(pid int) time.Duration {
	_, stime := times(pid)
	return stime
}

// times is pid's user and system CPU time; 0 for pid 0 or a process that
// is gone.
func times(pid int) (utime, stime time.Duration) {
	if pid == 0 {
		return 0, 0
	}
	st, err := procstat.ReadStat(pid)
	if err != nil {
		return 0, 0
	}
	return st.User, st.System
}

// memory is VmRSS and VmHWM of pid in MiB.
func memory(pid int) (rss, hwm float64) {
	m, _ := procstat.MemoryMiB(pid)
	return m["VmRSS"], m["VmHWM"]
}

// childPID finds this process's child named comm (the API server envtest
// started).
func childPID(comm string) (int, error) {
	pids, err := procstat.Children(os.Getpid(), comm)
	if err != nil {
		return 0, err
	}
	if len(pids) == 0 {
		return 0, fmt.Errorf("no %s child process", comm)
	}
	return pids[0], nil
}

// servingCert writes a self-signed certificate for 127.0.0.1 and returns
// its files and a pool that trusts it.
func servingCert(dir, name string) (certFile, keyFile string, roots *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(leaf)
	return certFile, keyFile, roots, nil
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(data)) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}
