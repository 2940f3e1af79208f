package controllers

import (
	"os/exec"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/testenv/suite"
)

var _ = Describe("kubectl get snoop", func() {
	It("shows the session's summary in its printer columns", func() {
		kubectl, err := testenv.Kubectl("kubectl")
		Expect(err).NotTo(HaveOccurred())

		ns := suite.Namespace(controlPlane, "snoop-test", nil)
		s := newSession(ns, func(s *snoopv1alpha1.SnoopSession) {
			s.Spec.Targets.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}
		})
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		newPod(ns, "old", map[string]string{"app": "demo"})
		newPod(ns, "injected", map[string]string{"app": "demo"}, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: targets.ProxyContainerName, Image: "apisnoop:dev"}}
		})
		Eventually(func(g Gomega) snoopv1alpha1.PodCounts { return getSession(s)(g).Status.Pods }).
			Should(Equal(snoopv1alpha1.PodCounts{Matched: 2, Injected: 1, WaitingForRestart: 1}))
		level := func(operations, hit int64, percent string) map[string]any {
			return map[string]any{"operations": operations, "hit": hit, "percent": percent}
		}
		Expect(k8sClient.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(collectorStatus(s, map[string]any{
			"requests":        int64(42),
			"unknownRequests": int64(3),
			"failedRequests":  int64(1),
			"coverage": map[string]any{
				"stable":   level(707, 12, "1.7"),
				"beta":     level(88, 3, "3.4"),
				"alpha":    level(120, 0, "0.0"),
				"eligible": level(602, 12, "2.0"),
			},
		})), client.FieldOwner(snoopv1alpha1.FieldOwnerCollector))).To(Succeed())

		get := func(args ...string) ([]string, []map[string]string) {
			cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", controlPlane.Kubeconfig, "-n", ns, "get", "snoop"}, args...)...)
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%s", out)
			GinkgoWriter.Printf("kubectl get snoop %s\n%s", strings.Join(args, " "), out)
			return parseTable(string(out))
		}

		By("the default columns")
		columns, rows := get()
		Expect(columns).To(Equal([]string{"NAME", "SOURCE", "RELEASE", "PODS", "REQUESTS", "STABLE %", "READY", "AGE"}))
		Expect(rows).To(HaveLen(1))
		Expect(rows[0]).To(MatchAllKeys(Keys{
			"NAME":     Equal("session"),
			"SOURCE":   Equal(string(snoopv1alpha1.SourcePods)), // the default
			"RELEASE":  Equal("1.37"),
			"PODS":     Equal("2"),
			"REQUESTS": Equal("42"),
			"STABLE %": Equal("1.7"),
			"READY":    Equal("True"),
			"AGE":      MatchRegexp(`^\d+s$`),
		}))

		By("the wide columns")
		columns, rows = get("-o", "wide")
		Expect(columns).To(Equal([]string{"NAME", "SOURCE", "RELEASE", "PODS", "REQUESTS", "STABLE %", "READY", "COMPLETED", "AGE",
			"INJECTED", "ELIGIBLE %", "BETA %", "UNKNOWN", "FAILED", "RECORDING"}))
		Expect(rows).To(HaveLen(1))
		Expect(rows[0]).To(MatchAllKeys(Keys{
			"NAME":       Equal("session"),
			"SOURCE":     Equal(string(snoopv1alpha1.SourcePods)),
			"RELEASE":    Equal("1.37"),
			"PODS":       Equal("2"),
			"REQUESTS":   Equal("42"),
			"STABLE %":   Equal("1.7"),
			"READY":      Equal("True"),
			"COMPLETED":  Equal("False"),
			"AGE":        MatchRegexp(`^\d+s$`),
			"INJECTED":   Equal("1"),
			"ELIGIBLE %": Equal("2.0"),
			"BETA %":     Equal("3.4"),
			"UNKNOWN":    Equal("3"),
			"FAILED":     Equal("1"),
			"RECORDING":  Equal(snoopv1alpha1.ReasonPodsWaitingForRestart),
		}))
	})
})

// parseTable reads kubectl's table output: its column headers, and one map
// per row keyed by header. A header may hold a space ("STABLE %"), so cells
// are cut at the offsets where the headers start: kubectl left-aligns each
// cell under its header and puts at least three spaces between columns.
func parseTable(out string) ([]string, []map[string]string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	Expect(lines).NotTo(BeEmpty())
	header := lines[0]
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || (i >= 2 && header[i-1] == ' ' && header[i-2] == ' ')) {
			starts = append(starts, i)
		}
	}
	cell := func(line string, k int) string {
		start, end := starts[k], len(line)
		if k+1 < len(starts) && starts[k+1] < end {
			end = starts[k+1]
		}
		if start >= end {
			return ""
		}
		return strings.TrimSpace(line[start:end])
	}
	columns := make([]string, len(starts))
	for k := range starts {
		columns[k] = cell(header, k)
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := map[string]string{}
		for k, column := range columns {
			row[column] = cell(line, k)
		}
		rows = append(rows, row)
	}
	return columns, rows
}
