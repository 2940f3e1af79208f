package results_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/results"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

var sharedControlPlane testenv.Shared

func TestMain(m *testing.M) { sharedControlPlane.Main(m) }

// createSession makes a fresh namespace with a session in it.
func createSession(t *testing.T, ctx context.Context, cp *testenv.ControlPlane, name string) *snoopv1alpha1.SnoopSession {
	t.Helper()
	ns, err := cp.Namespace(ctx, "results", nil)
	if err != nil {
		t.Fatal(err)
	}
	session := &snoopv1alpha1.SnoopSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       snoopv1alpha1.SnoopSessionSpec{KubernetesRelease: "1.37"},
	}
	if err := cp.Client.Create(ctx, session); err != nil {
		t.Fatal(err)
	}
	return session
}

// TestLoadFromAPIServer stores a state of several MiB, sharded, in a real
// API server, which must accept every ConfigMap, and reads it back.
func TestLoadFromAPIServer(t *testing.T) {
	cp := sharedControlPlane.Get(t)
	c := cp.Client
	ctx := context.Background()
	cat := results.Load137(t)
	session := createSession(t, ctx, cp, "big")
	st := results.BigState(t, cat)
	cms, err := results.ConfigMaps(session, st, cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(cms) < 2 {
		t.Fatalf("%d ConfigMaps, want several", len(cms))
	}
	for _, cm := range cms {
		if err := c.Create(ctx, cm); err != nil {
			t.Fatalf("create ConfigMap %s: %v", cm.Name, err)
		}
		// As stored: with the server's metadata and managedFields.
		stored, err := json.Marshal(cm)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s stored: %d bytes as JSON", cm.Name, len(stored))
		if len(stored) >= 1<<20 {
			t.Errorf("%s: %d bytes as stored, want below 1 MiB", cm.Name, len(stored))
		}
	}
	// A ConfigMap of another session beside them, and one of a namesake
	// that no longer exists (another UID), are not read.
	otherSession := createSession(t, ctx, cp, "other")
	otherSession.Namespace = session.Namespace
	otherSession.UID = "5c1a4f0e-0000-4000-8000-000000000001"
	small, err := results.ConfigMaps(otherSession, results.SmallState(), cat)
	if err != nil {
		t.Fatal(err)
	}
	stale := *session
	stale.UID = "5c1a4f0e-0000-4000-8000-000000000002"
	leftover, err := results.ConfigMaps(&stale, results.SmallState(), cat)
	if err != nil {
		t.Fatal(err)
	}
	leftover[0].Name = "big-results-old"
	for _, cm := range append(small, leftover...) {
		if err := c.Create(ctx, cm); err != nil {
			t.Fatalf("create ConfigMap %s: %v", cm.Name, err)
		}
	}

	got, names, err := results.Load(ctx, c, session)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, results.Names("big", len(cms))) {
		t.Errorf("names %v, want %v", names, results.Names("big", len(cms)))
	}
	if !reflect.DeepEqual(got, st) {
		t.Error("the state read from the API server differs from the one written")
	}
	// Without a UID, the session is known by name alone.
	byName := &snoopv1alpha1.SnoopSession{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: session.Namespace}}
	if _, _, err := results.Load(ctx, c, byName); err == nil || !strings.Contains(err.Error(), "big-results-old") {
		t.Errorf("Load by name with a namesake's leftover: %v, want the leftover refused", err)
	}

	// A session with nothing yet.
	none := createSession(t, ctx, cp, "none")
	if st, names, err := results.Load(ctx, c, none); err != nil || names != nil || !reflect.DeepEqual(st, &results.State{}) {
		t.Errorf("Load of a session without results = %+v, %v, %v; want an empty state, no names", st, names, err)
	}

	// A shard gone: an error, not a partial state.
	if err := c.Delete(ctx, cms[1]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := results.Load(ctx, c, session); err == nil || !strings.Contains(err.Error(), "missing shard 1") {
		t.Errorf("Load with a shard deleted: %v, want a missing shard", err)
	}
}
