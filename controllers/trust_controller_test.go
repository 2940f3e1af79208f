package controllers

import (
	"context"
	"errors"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// TestEncodeCatalog: the catalog ConfigMap carries the schemas beside the
// catalog while both fit the budget, and the catalog alone otherwise.
func TestEncodeCatalog(t *testing.T) {
	c, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	data, schemas, err := encodeCatalog(context.Background(), c, catalogConfigMapBudget)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1.37: catalog %d bytes, schemas %d bytes", len(data), len(schemas))
	decoded, err := catalog.DecodeSchemas(schemas)
	if err != nil {
		t.Fatal(err)
	}
	if !decoded.HasFieldPath("createAppsV1NamespacedDeployment", "spec.template.spec.containers[].image") {
		t.Error("the encoded schemas lack a Deployment's container image")
	}

	onlyCatalog, none, err := encodeCatalog(context.Background(), c, len(data)+len(schemas)-1)
	if err != nil || none != nil || string(onlyCatalog) != string(data) {
		t.Errorf("over budget: catalog %d bytes, schemas %d bytes, %v; want the catalog alone", len(onlyCatalog), len(none), err)
	}

	decodedCatalog, err := catalog.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodedCatalog.Schemas(); !errors.Is(err, catalog.ErrNoSchemas) {
		t.Fatalf("a decoded catalog has schemas: %v", err)
	}
	if _, none, err := encodeCatalog(context.Background(), decodedCatalog, catalogConfigMapBudget); err != nil || none != nil {
		t.Errorf("a catalog without schemas: schemas %d bytes, %v", len(none), err)
	}
}
