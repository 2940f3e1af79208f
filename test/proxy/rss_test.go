package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"apisnoop.dev/kube-apisnoop/internal/procstat"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// BenchmarkSidecarRSS runs the real snoop-proxy binary, as a sidecar
// runs it, in front of the suite's API server and reports its resident
// memory idle and under a load of b.N GETs from 16 concurrent clients.
// Run with: go test ./test/proxy -run '^$' -bench SidecarRSS -benchtime 20000x
func BenchmarkSidecarRSS(b *testing.B) {
	if testEnv == nil {
		startSuiteForBenchmark(b)
	}
	sc := startSidecar(b)
	defer sc.stop()
	time.Sleep(time.Second)
	idle := rssMiB(b, sc.pid)

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := int64(rssMiB(b, sc.pid) * 1024); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := sc.get(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(stop)
	<-sampled
	b.ReportMetric(idle, "rss-idle-MiB")
	b.ReportMetric(float64(peak.Load())/1024, "rss-load-MiB")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// sidecar is a running snoop-proxy binary in front of the suite's API
// server, configured as the webhook configures a sidecar.
type sidecar struct {
	pid     int
	url     string // the proxy
	admin   string // its admin endpoints: health and metrics
	results string // its loopback endpoints: /results and profiles
	client  *http.Client
	stop    func()
}

// get lists ConfigMaps through the sidecar with the admin token.
func (s *sidecar) get() error {
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api/v1/namespaces/default/configmaps?limit=10", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// testingT is what startSidecar needs of testing.TB and GinkgoT.
type testingT interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	TempDir() string
}

// startSidecar builds and starts snoop-proxy and waits until it serves.
// args are added to the sidecar's flags.
func startSidecar(tb testingT, args ...string) *sidecar {
	return startProxyBinary(tb, "./cmd/snoop-proxy", args...)
}

// startProxyBinary builds the proxy command at pkg (relative to the
// repository), starts it with the sidecar's flags and args and waits until
// it serves. Proxies other than snoop-proxy get the sidecar's runtime
// defaults from the environment, so that they compare like for like.
func startProxyBinary(tb testingT, pkg string, args ...string) *sidecar {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, filepath.Base(pkg))
	// Built as the image builds it: static, without cgo's libc.
	build := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			tb.Fatal(err)
		}
		return path
	}
	port, adminPort, resultsPort := freePort(tb), freePort(tb), freePort(tb)
	cmd := exec.Command(bin, append([]string{
		"--listen", "127.0.0.1:" + port, "--admin-listen", "127.0.0.1:" + adminPort, "--results-listen", "127.0.0.1:" + resultsPort,
		"--upstream", directConfig.Host, "--upstream-ca-file", write("ca.crt", directConfig.CAData),
		"--cert-file", write("tls.crt", certPEM), "--key-file", write("tls.key", keyPEM),
		"--pod-name", "bench-0", "--pod-namespace", "default", "--release", "1.37", "--profiling"}, args...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if pkg != "./cmd/snoop-proxy" {
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "GOMEMLIMIT=24MiB")
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	cfg := rest.CopyConfig(proxiedConfig)
	cfg.Host = "https://127.0.0.1:" + port
	cfg.TLSClientConfig.CAData = certPEM
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	s := &sidecar{
		pid: cmd.Process.Pid, url: cfg.Host, admin: "http://127.0.0.1:" + adminPort, results: "http://127.0.0.1:" + resultsPort,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 32}, Timeout: 10 * time.Second},
		stop:   func() { _ = cmd.Process.Kill(); _ = cmd.Wait() },
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.get() != nil {
		if time.Now().After(deadline) {
			s.stop()
			tb.Fatalf("%s did not come up", pkg)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// rssMiB is pid's resident memory (VmRSS) in MiB.
func rssMiB(b *testing.B, pid int) float64 {
	mem, err := procstat.MemoryMiB(pid)
	if err != nil {
		b.Fatal(err)
	}
	rss, ok := mem["VmRSS"]
	if !ok {
		b.Fatal("no VmRSS")
	}
	return rss
}

func freePort(tb testingT) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
