package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// benchEvents is the size of the generated log; AUDIT_BENCH_EVENTS changes it.
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("AUDIT_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

var requestMix = []struct{ verb, uri, resource, sub string }{
	{"list", "/api/v1/namespaces/ns-%d/pods?limit=500", "pods", ""},
	{"get", "/api/v1/namespaces/ns-%d/pods/web-%d", "pods", ""},
	{"watch", "/api/v1/namespaces/ns-%d/configmaps?allowWatchBookmarks=true&resourceVersion=%d&watch=true", "configmaps", ""},
	{"create", "/apis/apps/v1/namespaces/ns-%d/deployments?fieldManager=kubectl-client-side-apply", "deployments", ""},
	{"patch", "/apis/apps/v1/namespaces/ns-%d/deployments/web-%d?fieldManager=kubectl", "deployments", ""},
	{"update", "/apis/apps/v1/namespaces/ns-%d/deployments/web-%d/status", "deployments", "status"},
	{"delete", "/api/v1/namespaces/ns-%d/configmaps/cm-%d", "configmaps", ""},
	{"get", "/apis/coordination.k8s.io/v1/namespaces/ns-%d/leases/lease-%d", "leases", ""},
	{"update", "/apis/coordination.k8s.io/v1/namespaces/ns-%d/leases/lease-%d", "leases", ""},
	{"get", "/apis/apps/v1", "", ""},
	{"get", "/version", "", ""},
	{"get", "/apis/example.com/v1/namespaces/ns-%d/widgets/w-%d", "widgets", ""},
}

var (
	benchLogOnce sync.Once
	benchLog     string
	benchLines   int
)

// TestMain removes the generated log (about 0.9 GB) when the run ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchLog != "" {
		os.RemoveAll(filepath.Dir(benchLog))
	}
	os.Exit(code)
}

// generatedLog writes a realistic Metadata-level audit log once per run.
func generatedLog(b *testing.B) (string, int) {
	benchLogOnce.Do(func() {
		dir, err := os.MkdirTemp("", "apisnoop-audit-bench")
		if err != nil {
			b.Fatal(err)
		}
		benchLog = filepath.Join(dir, "audit.log")
		f, err := os.Create(benchLog)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for i := 0; i < benchEvents(); i++ {
			r := requestMix[i%len(requestMix)]
			uri := r.uri
			switch n := countVerbs(uri); n {
			case 1:
				uri = fmt.Sprintf(uri, i%50)
			case 2:
				uri = fmt.Sprintf(uri, i%50, i)
			}
			objectRef := ""
			if r.resource != "" {
				objectRef = fmt.Sprintf(`"objectRef":{"resource":%q,"namespace":"ns-%d","name":"obj-%d","apiGroup":"apps","apiVersion":"v1","subresource":%q},`, r.resource, i%50, i, r.sub)
			}
			stage := "ResponseComplete"
			if r.verb == "watch" {
				stage = "ResponseStarted"
			}
			fmt.Fprintf(w, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%08x-7d4c-4e5f-9a1b-%012x","stage":%q,"requestURI":%q,"verb":%q,"user":{"username":"system:serviceaccount:ns-%d:robot","uid":"5c3e2a1b-0f9d-4c8b-a7e6-d5c4b3a29180","groups":["system:serviceaccounts","system:serviceaccounts:ns-%d","system:authenticated"],"extra":{"authentication.kubernetes.io/pod-name":["web-%d"]}},"sourceIPs":["10.244.0.%d"],"userAgent":"manager/v0.0.0 (linux/amd64) kubernetes/$Format",%s"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-23T09:00:00.000000Z","stageTimestamp":"2026-11-23T09:00:00.001234Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"manager\" of ClusterRole \"manager\" to ServiceAccount \"robot/ns-%d\""}}`+"\n",
				i, i, stage, uri, r.verb, i%50, i%50, i%7, i%250, objectRef, i%50)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		benchLines = benchEvents()
	})
	if benchLog == "" {
		b.Fatal("no generated log")
	}
	return benchLog, benchLines
}

func countVerbs(format string) int {
	n := 0
	for i := 0; i+1 < len(format); i++ {
		if format[i] == '%' && format[i+1] == 'd' {
			n++
		}
	}
	return n
}

func reportThroughput(b *testing.B, lines int, size int64) {
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(lines)*float64(b.N)/secs, "events/s")
	b.ReportMetric(float64(size)*float64(b.N)/secs/(1<<20), "MiB/s")
}

// BenchmarkAnalyze is kubectl-snoop coverage's work: read, deduplicate,
// match and aggregate every event of the generated log.
func BenchmarkAnalyze(b *testing.B) {
	path, lines := generatedLog(b)
	info, _ := os.Stat(path)
	cat, err := catalog.Load("1.37")
	if err != nil {
		b.Fatal(err)
	}
	m := match.New(cat)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var d coverage.Delta
		stats, err := Analyze(f, m, &d, nil, nil)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		if stats.Events != int64(lines) {
			b.Fatalf("analyzed %d events, want %d", stats.Events, lines)
		}
	}
	reportThroughput(b, lines, info.Size())
}

// BenchmarkPlainDecode is the baseline: decode every line of the same log
// into the API server's own audit Event type with encoding/json, nothing else.
func BenchmarkPlainDecode(b *testing.B) {
	path, lines := generatedLog(b)
	info, _ := os.Stat(path)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReaderSize(f, 256<<10)
		n := 0
		for {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			var ev auditv1.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				b.Fatal(err)
			}
			n++
		}
		f.Close()
		if n != lines {
			b.Fatalf("decoded %d lines, want %d", n, lines)
		}
	}
	reportThroughput(b, lines, info.Size())
}
