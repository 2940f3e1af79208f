package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// sharedControlPlane is the package's one control plane, started by the
// first test that asks for it and stopped by TestMain.
var sharedControlPlane testenv.Shared

// clientCertKubeconfig starts one control plane for the package and returns
// a kubeconfig that authenticates with a client certificate.
func clientCertKubeconfig(t *testing.T) string {
	t.Helper()
	kubeconfig := sharedControlPlane.Get(t).Kubeconfig
	if data, _ := os.ReadFile(kubeconfig); !bytes.Contains(data, []byte("client-certificate-data")) {
		t.Fatal("the test kubeconfig does not use client-certificate auth")
	}
	return kubeconfig
}

func TestMain(m *testing.M) { sharedControlPlane.Main(m) }

func runRecord(t *testing.T, args ...string) (stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.Execute()
	return errOut.String(), err
}

func TestRecordKubectlWithClientCertificates(t *testing.T) {
	kubeconfig := clientCertKubeconfig(t)
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	report, err := runRecord(t, "record", "--kubeconfig", kubeconfig, "--release", "1.37", "--", kubectl, "get", "pods", "-A")
	if err != nil {
		t.Fatalf("record failed: %v\n%s", err, report)
	}
	for _, want := range []string{"Kubernetes 1.37:", "listCoreV1PodForAllNamespaces", "stable"} {
		if !strings.Contains(report, want) {
			t.Errorf("coverage lacks %q:\n%s", want, report)
		}
	}
}

func TestRecordKeepsExitCodeAndWritesJSON(t *testing.T) {
	kubeconfig := clientCertKubeconfig(t)
	kubectl, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "coverage.json")
	_, err = runRecord(t, "record", "--kubeconfig", kubeconfig, "-o", "json", "--out", out, "--",
		kubectl, "get", "configmap", "does-not-exist", "-n", "default")
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Fatalf("err = %v, want kubectl's exit status 1", err)
	}
	r := mustReadReport(t, out)
	if r.Summary.FailedRequests == 0 || r.Summary.Release != "1.37" {
		t.Errorf("summary %+v, want the failed read recorded against the server's release", r.Summary)
	}
	if r.Summary.Fields != nil {
		t.Errorf("field coverage %+v without --bodies", r.Summary.Fields)
	}
}
