package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/provenance"
	"apisnoop.dev/kube-apisnoop/internal/results"
)

// history --session reads the writes a session kept from its results
// ConfigMaps, as the operator persists them, and tells their history as
// from an audit log.
func TestHistoryFromSessionResults(t *testing.T) {
	f := newReportFixture(t)
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	st := &results.State{Sources: map[string]uint64{"pod-uid": 1}}
	write := func(id string, offset time.Duration, verb, uri, body string, status int) {
		st.Delta.Add(coverage.Hit{OperationID: verb + "CoreV1NamespacedConfigMap", Verb: verb, Status: status})
		w := coverage.Write{ID: "pod-uid/" + id, Received: at.Add(offset), Completed: at.Add(offset + time.Millisecond),
			Verb: verb, Version: "v1", Resource: "configmaps", Namespace: "shop", Name: "settings", Status: status,
			RequestURI: uri, User: "system:serviceaccount:shop:app", UserAgent: "app/1.0"}
		if body != "" {
			w.Request = []byte(body)
		}
		st.Delta.AddWrite(w)
	}
	write("1", 0, "create", "/api/v1/namespaces/shop/configmaps",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"shop"},"data":{"mode":"slow"}}`, 201)
	write("2", time.Second, "patch", "/api/v1/namespaces/shop/configmaps/settings", `{"data":{"mode":"fast","extra":"1"}}`, 200)
	write("3", 2*time.Second, "delete", "/api/v1/namespaces/shop/configmaps/settings", "", 200)
	f.session(t, "recorded", "1.37", st)
	f.session(t, "empty", "1.37", knownState())

	run := func(args ...string) (string, error) {
		root := newRootCommand()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(append([]string{"history", "--kubeconfig", f.cp.Kubeconfig}, args...))
		err := root.ExecuteContext(context.Background())
		return out.String() + errOut.String(), err
	}
	out, err := run("configmaps/settings", "-n", "shop", "--session", f.namespace+"/recorded", "--spec")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"configmaps shop/settings", "system:serviceaccount:shop:app", "app/1.0", "create", "patch", "delete", "mode: fast"} {
		if !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	out, err = run("diff", "configmaps/settings", "1", "2", "-n", "shop", "--session", f.namespace+"/recorded")
	if err != nil || !strings.Contains(out, "data.mode") || !strings.Contains(out, "data.extra") {
		t.Errorf("diff 1 2: %v\n%s", err, out)
	}
	out, err = run("bisect", "configmaps/settings", "--where", "data.mode=fast", "-n", "shop", "--session", f.namespace+"/recorded", "-o", "json")
	var found provenance.BisectResult
	if err != nil || json.Unmarshal([]byte(out), &found) != nil || found.Version == nil || found.Version.Number != 2 {
		t.Errorf("bisect data.mode=fast: %v, want version 2:\n%s", err, out)
	}

	// A session that kept no writes says why.
	if _, err := run("configmaps/settings", "--session", f.namespace+"/empty"); err == nil || !strings.Contains(err.Error(), "requestBodies") {
		t.Errorf("a session without writes: %v", err)
	}
	if _, err := run("configmaps/settings", "--session", f.namespace+"/absent"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a session that does not exist: %v", err)
	}
}
