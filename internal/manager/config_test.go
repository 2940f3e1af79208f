package manager_test

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"apisnoop.dev/kube-apisnoop/internal/manager"
)

// TestRefusesNegativeCatalogCheck: a negative --catalog-check-interval is
// an error that says what to give, before anything is started.
func TestRefusesNegativeCatalogCheck(t *testing.T) {
	_, err := manager.New(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Config{Namespace: "apisnoop-system", CatalogCheck: -time.Second}, ctrl.Options{})
	if err == nil || !strings.Contains(err.Error(), "--catalog-check-interval -1s is negative") {
		t.Fatalf("New with a negative catalog check: %v, want an error naming the flag", err)
	}
}
