package audit

import (
	"fmt"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// TestHitTableAgreesWithAMap interns events with enough distinct hits to
// grow the table several times, each twice, and checks that equal hits
// share an entry, distinct ones do not, and each entry is the event's Hit.
func TestHitTableAgreesWithAMap(t *testing.T) {
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	m := match.New(cat)
	uris := []struct{ verb, uri string }{
		{"get", "/api/v1/namespaces/ns/pods/web"},
		{"list", "/api/v1/namespaces/ns/pods"},
		{"watch", "/api/v1/pods?watch=true"},
		{"update", "/apis/apps/v1/namespaces/ns/deployments/web/status"},
		{"get", "/apis/example.com/v1/namespaces/ns/widgets/w"},
		{"", "/api/v1/namespaces/ns/pods/web"},
		{"get", "/healthz"},
	}
	table := newHitTable()
	want := map[coverage.Hit]int32{}
	for round := range 2 {
		for user := range 300 {
			for i, u := range uris {
				code := 200 + 100*(user%3)
				ev := Event{Verb: u.verb, RequestURI: u.uri, UserAgent: fmt.Sprintf("agent/%d", i%2),
					ResponseStatus: &ResponseStatus{Code: code}}
				ev.User.Username = fmt.Sprintf("system:serviceaccount:ns:sa-%d", user)
				got, _ := table.intern(m, &ev)
				hit := Hit(m, &ev)
				if table.hits[got] != hit {
					t.Fatalf("round %d: entry %d is %+v, want %+v", round, got, table.hits[got], hit)
				}
				if prev, ok := want[hit]; ok && prev != got {
					t.Fatalf("round %d: %+v interned as %d and %d", round, hit, prev, got)
				}
				want[hit] = got
			}
		}
	}
	if len(table.hits) != len(want) {
		t.Errorf("%d entries for %d distinct hits", len(table.hits), len(want))
	}
}
