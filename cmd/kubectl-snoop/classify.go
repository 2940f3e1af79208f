package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// classification is one request as kubectl-snoop understands it, next to
// what the API server logged, so disagreements are easy to spot.
type classification struct {
	AuditID     string            `json:"auditID"`
	RequestURI  string            `json:"requestURI"`
	Method      string            `json:"method"`
	AuditVerb   string            `json:"auditVerb"`
	AuditObject *audit.ObjectRef  `json:"auditObjectRef,omitempty"`
	Info        match.RequestInfo `json:"info"`
	OperationID string            `json:"operationId,omitempty"`
	Level       catalog.Level     `json:"level,omitempty"`
	Action      string            `json:"action,omitempty"`
	Watch       bool              `json:"watch,omitempty"`
	Status      int               `json:"status"`
}

func newClassifyCommand() *cobra.Command {
	var release, openapiFile string
	cmd := &cobra.Command{
		Use:   "classify [--release 1.37] [FILE...]",
		Short: "Print each audited request's request info and operation as JSON lines",
		Long: `Reads audit log lines (files, or standard input) and prints, per request,
the request info and operationId kubectl-snoop derives, beside the verb and
objectRef the API server logged. This is how matching fidelity is checked.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := loadCatalog(release, openapiFile)
			if err != nil {
				return err
			}
			m := match.New(cat)
			if len(args) == 0 {
				args = []string{"-"}
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			enc := json.NewEncoder(out)
			for _, name := range args {
				f, err := openLog(name)
				if err != nil {
					return err
				}
				err = classify(f, m, enc, malformedWarner(name))
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&release, "release", "1.37", "Kubernetes release to match against (1.31 to 1.37)")
	cmd.Flags().StringVar(&openapiFile, "openapi", "", "match against this OpenAPI v2 document instead of an embedded release")
	return cmd
}

func classify(r io.Reader, m *match.Matcher, enc *json.Encoder, onMalformed func(int64, error)) error {
	reader := audit.NewReader(r)
	reader.OnMalformed = onMalformed
	for {
		ev, err := reader.Next()
		if errors.Is(err, io.EOF) {
			warnMalformedTotal(reader.Stats())
			return nil
		}
		if err != nil {
			return err
		}
		if err := enc.Encode(classifyEvent(m, ev)); err != nil {
			return fmt.Errorf("write classification: %w", err)
		}
	}
}

// classifyEvent matches one audit event.
func classifyEvent(m *match.Matcher, ev *audit.Event) classification {
	res := audit.Match(m, ev)
	c := classification{
		AuditID: ev.AuditID, RequestURI: ev.RequestURI, Method: ev.Method(), AuditVerb: ev.Verb,
		AuditObject: ev.ObjectRef, Info: res.Info, Watch: res.Watch, Status: ev.Code(),
	}
	if res.Operation != nil {
		c.OperationID, c.Level, c.Action = res.Operation.ID, res.Operation.Level, res.Operation.Action
	}
	return c
}
