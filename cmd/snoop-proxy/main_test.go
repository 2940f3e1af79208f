package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoOperator keeps the sidecar small: what it links is resident
// memory in every recorded pod. client-go, controller-runtime and the API
// server's libraries belong to the operator and to kubectl-snoop;
// kin-openapi (and the JSON Schema validator it brings) to the live-cluster
// catalog (internal/catalog/openapiv3); goproxy to the CONNECT mode
// (internal/proxy/connect) of `apisnoop proxy`. apimachinery's meta types
// and runtime scheme, and client_golang with the protobuf runtime it
// brings, were each about 4 MiB of the sidecar's resident memory: the
// matcher decodes list options and the recorder writes its metrics without
// them.
func TestLinksNoOperator(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, heavy := range []string{
			"k8s.io/client-go/", "sigs.k8s.io/controller-runtime/", "k8s.io/apiserver/", "k8s.io/api/",
			"github.com/getkin/kin-openapi/", "github.com/santhosh-tekuri/jsonschema/", "github.com/elazarl/goproxy/",
			"k8s.io/apimachinery/pkg/apis/", "k8s.io/apimachinery/pkg/runtime/", "github.com/prometheus/", "google.golang.org/protobuf/",
		} {
			if strings.HasPrefix(dep+"/", heavy) {
				t.Errorf("the sidecar links %s", dep)
			}
		}
	}
}
