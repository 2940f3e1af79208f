package main

import (
	"bufio"
	"context"
	"encoding/json"
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
		Long: `Reads audit logs (files, or standard input) and prints one JSON line per
request: the request info and operationId kubectl-snoop derives, beside the
verb and objectRef the API server logged. This is how matching fidelity is
checked. Requests come in the order they are counted, the order of the events
they count at.

` + auditLogHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := loadCatalog(release, openapiFile)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{"-"}
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			stats, err := classify(cmd.Context(), logSources(args), match.New(cat), out)
			if ferr := out.Flush(); err == nil && ferr != nil {
				err = fmt.Errorf("write classification: %w", ferr)
			}
			if err != nil {
				return err
			}
			warnTotals(stats)
			return nil
		},
	}
	cmd.Flags().StringVar(&release, "release", "1.37", "Kubernetes release to match against (1.31 to 1.37)")
	cmd.Flags().StringVar(&openapiFile, "openapi", "", "match against this OpenAPI v2 document instead of an embedded release")
	return cmd
}

// classify writes one classification per request. Workers match and encode
// in parallel; the lines come out in counting order.
func classify(ctx context.Context, sources []audit.Source, m *match.Matcher, out io.Writer) (audit.Stats, error) {
	var werr error
	stats, err := audit.Read(ctx, sources, audit.Options{Progress: progressPrinter(), OnMalformed: malformedWarner()},
		func() func(*audit.Event) []byte {
			return func(ev *audit.Event) []byte {
				line, err := json.Marshal(classifyEvent(m, ev))
				if err != nil { // cannot happen: strings and numbers only
					panic(err)
				}
				return append(line, '\n')
			}
		},
		func(line []byte) {
			if werr == nil {
				_, werr = out.Write(line)
			}
		})
	if err == nil && werr != nil {
		err = fmt.Errorf("write classification: %w", werr)
	}
	return stats, err
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
