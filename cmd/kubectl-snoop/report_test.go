package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// reportFixture is a fresh namespace in the package's control plane, whose
// admin kubeconfig and uncached client the report and the test use.
type reportFixture struct {
	cp        *testenv.ControlPlane
	namespace string
}

func newReportFixture(t *testing.T) *reportFixture {
	t.Helper()
	cp := sharedControlPlane.Get(t)
	ns, err := cp.Namespace(context.Background(), "report", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &reportFixture{cp: cp, namespace: ns}
}

// session creates a SnoopSession and, when st is not nil, its results
// ConfigMaps as the operator writes them. It returns the ConfigMaps' names.
func (f *reportFixture) session(t *testing.T, name, release string, st *results.State) []string {
	t.Helper()
	ctx := context.Background()
	session := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.namespace},
		Spec:       snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: release},
	}
	if err := f.cp.Client.Create(ctx, session); err != nil {
		t.Fatal(err)
	}
	if st == nil {
		return nil
	}
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	cms, err := results.ConfigMaps(session, st, cat)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range cms {
		if err := f.cp.Client.Create(ctx, cm); err != nil {
			t.Fatalf("create ConfigMap %s: %v", cm.Name, err)
		}
		names = append(names, cm.Name)
	}
	return names
}

func (f *reportFixture) report(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"report", "--kubeconfig", f.cp.Kubeconfig, "-n", f.namespace}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// knownState is 10 requests: 5 lists and 2 failed reads of pods, 3 of an
// unknown path; and 4 ignored.
func knownState() *results.State {
	kubectl := coverage.Client{User: "admin", UserAgent: "kubectl/v1.37.0"}
	st := &results.State{Sources: map[string]uint64{"pod-uid": 3}, Ignored: 4}
	st.Delta.AddN(coverage.Hit{OperationID: "listCoreV1NamespacedPod", Verb: "list", Status: 200, Client: kubectl}, 5)
	st.Delta.AddN(coverage.Hit{OperationID: "readCoreV1NamespacedPod", Verb: "get", Status: 404, Client: kubectl}, 2)
	st.Delta.AddN(coverage.Hit{Unknown: "GET /apis/example.com/v1/widgets", Verb: "list", Status: 200, Client: kubectl}, 3)
	return st
}

func TestReportPrintsSessionCoverage(t *testing.T) {
	f := newReportFixture(t)
	names := f.session(t, "demo", "1.37", knownState())

	out, err := f.report(t, "demo", "-o", "json")
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	var rep coverage.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report -o json is not a coverage report: %v\n%.500s", err, out)
	}
	s := rep.Summary
	if s.Release != "1.37" || s.Requests != 10 || s.FailedRequests != 2 || s.UnknownRequests != 3 ||
		s.Stable.Hit != 2 || s.Stable.Operations != 707 || s.Eligible.Hit != 2 || s.Eligible.Operations != 602 || s.Beta.Hit != 0 {
		t.Errorf("summary %+v", s)
	}
	if len(rep.Untested) != 600 || len(rep.Unknown) != 1 || rep.Unknown[0].Requests != 3 {
		t.Errorf("%d untested, unknown %+v: want 600 untested and the widgets", len(rep.Untested), rep.Unknown)
	}

	out, err = f.report(t, "demo")
	if err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`SnoopSession ` + f.namespace + `/demo, results in ` + names[0] + `\n`),
		regexp.MustCompile(`4 requests shipped after the session stopped`),
		regexp.MustCompile(`Kubernetes 1\.37: 10 requests, 2 failed, 3 unknown`),
		regexp.MustCompile(`\nstable +2 +707 +0\.3%\n`),
		regexp.MustCompile(`\neligible +2 +602 +0\.3%\n`),
		regexp.MustCompile(`\n5 +stable \(eligible\) +listCoreV1NamespacedPod +list=5 +2xx=5`),
		regexp.MustCompile(`Eligible operations not hit \(600\):`),
	} {
		if !want.MatchString(out) {
			t.Errorf("table output lacks %q:\n%.1500s", want, out)
		}
	}

	out, err = f.report(t, "demo", "-o", "markdown", "--untested=false")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "| stable | 2 | 707 | 0.3% |") || strings.Contains(out, "not hit") {
		t.Errorf("markdown output:\n%.1000s", out)
	}
}

// TestReportReadsShardedResults reads a session whose results span several
// ConfigMaps.
func TestReportReadsShardedResults(t *testing.T) {
	f := newReportFixture(t)
	st := knownState()
	rng := rand.New(rand.NewPCG(7, 8))
	random := func(words int) string {
		var b strings.Builder
		for range words {
			fmt.Fprintf(&b, "%016x", rng.Uint64())
		}
		return b.String()
	}
	// About 1 MiB compressed: random text barely compresses.
	for i := range coverage.MaxUnknownPaths {
		shape := fmt.Sprintf("GET /apis/x%d.example.com/v1/%s", i, random(12))
		st.Delta.AddN(coverage.Hit{Unknown: shape, Verb: "get", Status: 404, Client: coverage.Client{Pod: "pod-" + random(8)}}, 1)
	}
	names := f.session(t, "sharded", "1.37", st)
	if len(names) < 2 {
		t.Fatalf("%d ConfigMaps, want several", len(names))
	}
	out, err := f.report(t, "sharded", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep coverage.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	cat, _ := catalog.Load("1.37")
	if want := coverage.NewReport(cat, &st.Delta); !reflect.DeepEqual(rep.Summary, want.Summary) || len(rep.Unknown) != len(want.Unknown) {
		t.Errorf("summary from %d ConfigMaps = %+v, want %+v", len(names), rep.Summary, want.Summary)
	}
}

func TestReportClusterRelease(t *testing.T) {
	f := newReportFixture(t)
	f.session(t, "live", snoopv1alpha1.ClusterRelease, knownState())
	out, err := f.report(t, "live", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep coverage.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if s := rep.Summary; !strings.HasPrefix(s.Release, "cluster v1.") || s.Requests != 10 || s.Stable.Hit != 2 {
		t.Errorf("summary against the cluster's API: %+v", s)
	}
}

func TestReportWithoutResults(t *testing.T) {
	f := newReportFixture(t)
	f.session(t, "fresh", "1.37", nil)
	for _, tc := range []struct{ name, want string }{
		{"fresh", "SnoopSession " + f.namespace + "/fresh has no results yet: no ConfigMap fresh-results"},
		{"absent", "SnoopSession absent not found in namespace " + f.namespace},
	} {
		out, err := f.report(t, tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("report %s: %v, want an error saying %q", tc.name, err, tc.want)
		}
		if out != "" {
			t.Errorf("report %s printed %q", tc.name, out)
		}
	}
	if _, err := f.report(t, "fresh", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "unknown output format") {
		t.Errorf("report -o yaml: %v", err)
	}
}
