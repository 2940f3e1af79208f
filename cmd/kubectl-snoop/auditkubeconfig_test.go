package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/manager"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// kubectl-snoop repeats the operator's names so as not to link it; they
// must stay the operator's. (test/auditsink runs audit-kubeconfig against a
// manager and an API server that uses its output.)
func TestAuditKubeconfigNamesTheOperators(t *testing.T) {
	if auditPath != collector.AuditPath {
		t.Errorf("auditPath %q, the collector serves %q", auditPath, collector.AuditPath)
	}
	if webhookService != manager.DefaultWebhookService || webhookConfiguration != manager.DefaultWebhookConfiguration {
		t.Errorf("webhook Service %q and configuration %q, the manager's are %q and %q",
			webhookService, webhookConfiguration, manager.DefaultWebhookService, manager.DefaultWebhookConfiguration)
	}
	chart, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "charts", "kube-apisnoop", "templates", "audit-writer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(chart), "kind: ServiceAccount\nmetadata:\n  name: "+defaultAuditWriter+"\n") {
		t.Errorf("the chart makes no service account %q", defaultAuditWriter)
	}
}
