package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// BenchmarkSidecarRSS runs the real `apisnoop proxy` binary, as a sidecar
// runs it, in front of the suite's API server and reports its resident
// memory idle and under a load of b.N GETs from 16 concurrent clients.
// Run with: go test ./test/proxy -run '^$' -bench SidecarRSS -benchtime 20000x
func BenchmarkSidecarRSS(b *testing.B) {
	if testEnv == nil {
		startSuiteForBenchmark(b)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "apisnoop")
	build := exec.Command("go", "build", "-o", bin, "./cmd/apisnoop")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build apisnoop: %v\n%s", err, out)
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	port := freePort(b)
	adminPort := freePort(b)
	cmd := exec.Command(bin, "proxy",
		"--listen", "127.0.0.1:"+port, "--admin-listen", "127.0.0.1:"+adminPort,
		"--upstream", directConfig.Host, "--upstream-ca-file", write("ca.crt", directConfig.CAData),
		"--cert-file", write("tls.crt", certPEM), "--key-file", write("tls.key", keyPEM),
		"--pod-name", "bench-0", "--pod-namespace", "default", "--release", "1.37")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	cfg := rest.CopyConfig(proxiedConfig)
	cfg.Host = "https://127.0.0.1:" + port
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 32}, Timeout: 10 * time.Second}
	get := func() error {
		req, _ := http.NewRequest(http.MethodGet, cfg.Host+"/api/v1/namespaces/default/configmaps?limit=10", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
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
	deadline := time.Now().Add(10 * time.Second)
	for get() != nil {
		if time.Now().After(deadline) {
			b.Fatal("the proxy did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	idle := rssMiB(b, cmd.Process.Pid)

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if r := int64(rssMiB(b, cmd.Process.Pid) * 1024); r > peak.Load() {
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
				if err := get(); err != nil {
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

func rssMiB(b *testing.B, pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func freePort(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
