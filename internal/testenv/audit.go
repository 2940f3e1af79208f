package testenv

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// metadataAuditPolicy logs every request at Metadata level (no bodies), at
// the stages the offline analysis reads.
const metadataAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// EnableAuditLog makes env's API server write a JSON audit log of every
// request into dir, and returns the log's path. Call it before env.Start.
func EnableAuditLog(env *envtest.Environment, dir string) (string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(metadataAuditPolicy), 0o600); err != nil {
		return "", fmt.Errorf("write audit policy: %w", err)
	}
	log := filepath.Join(dir, "audit.log")
	args := env.ControlPlane.GetAPIServer().Configure()
	args.Set("audit-policy-file", policy)
	args.Set("audit-log-path", log)
	args.Set("audit-log-format", "json")
	// Blocking: every request is in the log once its response is sent.
	args.Set("audit-log-mode", "blocking")
	return log, nil
}
