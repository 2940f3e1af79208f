// Package fieldstest holds request bodies for the tests of field coverage
// (the walker, the reports, the HTML page). Only tests import it.
package fieldstest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Deployment returns a typical Deployment body (internal/fields/testdata/
// deployment.json), and the same with a misspelt field (spec.replica) and
// an ill-typed one (spec.replicas: "three").
func Deployment(t testing.TB) (body, misspelt []byte) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	body, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "testdata", "deployment.json"))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatal(err)
	}
	spec := obj["spec"].(map[string]any)
	spec["replicas"] = "three"
	spec["replica"] = 3
	misspelt, err = json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return body, misspelt
}
