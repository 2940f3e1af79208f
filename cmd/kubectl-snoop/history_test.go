package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// testdata/history-audit.log holds what a real API server logged while
// kubectl wrote a Deployment and a ConfigMap, at RequestResponse level in
// namespace prov-response and at Request level in prov-request
// (internal/provenance's envtest test drives the same script).
const historyLog = "testdata/history-audit.log"

func TestHistoryCommand(t *testing.T) {
	out := runCommand(t, "history", "deployments.apps/web", "-n", "prov-response", "--audit-log", historyLog)
	for _, want := range []string{
		"deployments.apps prov-response/web",
		"VERSION  TIME", "apply", "patch scale", "patch status", "delete",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 12 {
		t.Errorf("history has %d lines, want a title, a header and 10 versions:\n%s", lines, out)
	}

	var h struct {
		Versions []struct {
			Verb   string         `json:"verb"`
			Source string         `json:"source"`
			Object map[string]any `json:"object"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(runCommand(t, "history", "deployment/web", "-n", "prov-request", "--spec", "-o", "json", "--audit-log", historyLog)), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Versions) != 10 || h.Versions[0].Source != "request" || h.Versions[2].Source != "reconstructed" || h.Versions[2].Object == nil {
		t.Errorf("history -o json --spec at Request level: %+v", h.Versions)
	}

	md := runCommand(t, "history", "configmap/settings", "-n", "prov-response", "-o", "markdown", "--spec", "--audit-log", historyLog)
	if !strings.Contains(md, "| 3 |") || !strings.Contains(md, "```yaml") {
		t.Errorf("markdown history:\n%s", md)
	}

	diff := runCommand(t, "history", "diff", "configmap/settings", "1", "3", "-n", "prov-response", "--audit-log", historyLog)
	for _, want := range []string{"- data.a: 1", "+ data.b: 2", "+ data.c: 3"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}

	bisect := runCommand(t, "history", "bisect", "deployments/web", "-n", "prov-request", "--audit-log", historyLog,
		"--where", "spec.template.spec.containers.name=nginx,spec.template.spec.containers.image=nginx:1.26")
	if !strings.HasPrefix(bisect, "deployments.apps prov-request/web: version 5 is the first with") {
		t.Errorf("bisect: %s", bisect)
	}
}

func TestHistoryErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"history", "web", "--audit-log", historyLog}, "is not RESOURCE/NAME"},
		{[]string{"history", "deployments/web", "--audit-log", historyLog}, "matches more than one object"},
		{[]string{"history", "deployments/nothere", "--audit-log", historyLog}, "no successful write"},
		{[]string{"history", "deployments/web", "-n", "prov-response"}, "give either --audit-log or --session"},
		{[]string{"history", "diff", "deployments/web", "1", "9", "-n", "prov-response", "--audit-log", historyLog}, "version 9: the object is not known"},
		{[]string{"history", "bisect", "deployments/web", "-n", "prov-response", "--audit-log", historyLog, "--where", "spec.replicas"}, "is not FIELD=VALUE"},
	} {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(tc.args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
