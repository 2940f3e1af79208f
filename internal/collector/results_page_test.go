package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"k8s.io/apimachinery/pkg/types"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/collector"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport/browsertest"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/results"
)

// TestLivePageInChromium opens a session's live page, served by the results
// API, in a real Chromium with a service account's token in the URL
// fragment, and checks what the page drew against the JSON results: first
// the results loaded, then, without a reload, the results after more
// requests arrived. A wrong token, or one of someone who may not get the
// session, shows why it was refused and no results.
func TestLivePageInChromium(t *testing.T) {
	browser := browsertest.New(t)
	f := newResultsFixture(t)
	ns := f.namespace()
	session := f.session(ns, "session")
	f.agg.Restore(session, &results.State{Delta: sampleDelta()})
	reader := f.serviceAccount(ns, "reader", true)
	nobody := f.serviceAccount(ns, "nobody", false)
	page := f.server.URL + collector.ResultsPagePath(session.Namespace, session.Name)

	var first coverage.Report
	t.Run("the page shows the results to a reader", func(t *testing.T) {
		browsertest.Open(t, browser, page+"#token="+reader)
		first = f.jsonResults(session, reader)
		if first.Summary.Requests != 5 {
			t.Fatalf("the JSON results hold %d requests, want the sample's 5", first.Summary.Requests)
		}
		browsertest.CheckReport(t, browser, first, "pod")
		if status := liveStatus(t, browser); !strings.HasPrefix(status, "Live: 5 requests") {
			t.Errorf("the page says %q, want it live with 5 requests", status)
		}
		// The token is not left in the address bar, or in the history.
		if u := evaluate[string](t, browser, `location.href`); strings.Contains(u, "token") {
			t.Errorf("the page's URL still holds the token: %s", u)
		}
	})

	t.Run("the page shows new requests without a reload", func(t *testing.T) {
		// Marks this document: a reload would lose the mark.
		evaluate[bool](t, browser, `window.sameDocument = true`)
		cat, err := catalog.Load("1.37")
		if err != nil {
			t.Fatal(err)
		}
		more := &coverage.Delta{}
		for _, h := range []coverage.Hit{
			{OperationID: "createCoreV1NamespacedConfigMap", Verb: "create", Status: 201},
			{OperationID: "listCoreV1NamespacedConfigMap", Verb: "list", Status: 200},
			{OperationID: "listCoreV1NamespacedConfigMap", Verb: "list", Status: 200},
			{OperationID: firstOf(t, cat, catalog.Beta), Verb: "get", Status: 200},
		} {
			h.Client = coverage.Client{Pod: "web-2", Namespace: ns, ServiceAccount: "robot", UserAgent: "controller/v2"}
			more.Add(h)
		}
		if _, _, err := f.agg.Accept(session, intake.Batch{Source: "pod-uid", Seq: 1, Release: "1.37", Delta: more}, false); err != nil {
			t.Fatal(err)
		}
		// A fetch under way may still bring the old results; the one after
		// it started after the batch was accepted.
		start := time.Now()
		browsertest.WaitRendered(t, browser, evaluate[int](t, browser, `window.snoopReport.renders`)+2)
		t.Logf("the page showed the new results %s after they arrived (it refreshes every %s)", time.Since(start).Round(time.Millisecond), collector.PageRefresh)

		now := f.jsonResults(session, reader)
		if now.Summary.Requests != 9 || now.Summary.Stable.Hit != first.Summary.Stable.Hit+2 || now.Summary.Beta.Hit != first.Summary.Beta.Hit+1 {
			t.Fatalf("the JSON results after the batch: %+v, want 9 requests, 2 more stable and 1 more beta operations hit than %+v", now.Summary, first.Summary)
		}
		browsertest.CheckReport(t, browser, now, "configmap")
		if status := liveStatus(t, browser); !strings.HasPrefix(status, "Live: 9 requests") {
			t.Errorf("the page says %q, want it live with 9 requests", status)
		}
		if !evaluate[bool](t, browser, `window.sameDocument === true`) {
			t.Error("the page was reloaded to show the new results")
		}
		browsertest.Screenshot(t, browser, "live-session-page")
	})

	for _, tc := range []struct {
		name, token, want string
	}{
		{"a forged token is refused", "not-a-token", "Refused (401)"},
		{"the token of someone who may not get the session is refused", nobody, "Refused (403)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A new document: from the page itself, a changed fragment
			// would not load it again.
			if err := chromedp.Do(browser, chromedp.Navigate("about:blank"), chromedp.Navigate(page+"#token="+tc.token)); err != nil {
				t.Fatal(err)
			}
			_, err := chromedp.Run(browser, chromedp.Poll[bool](fmt.Sprintf(`document.getElementById('live-status').textContent.startsWith(%q)`, tc.want),
				chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
			if err != nil {
				t.Fatalf("the page never said %q: %v; it says %q", tc.want, err, liveStatus(t, browser))
			}
			if renders := evaluate[int](t, browser, `window.snoopReport.renders`); renders != 0 {
				t.Errorf("the page drew results %d times", renders)
			}
			if cards := browsertest.ReadCards(t, browser); len(cards) != 0 {
				t.Errorf("the page shows cards: %v", cards)
			}
			if text := evaluate[string](t, browser, `document.body.innerText`); strings.Contains(text, "listCoreV1NamespacedPod") || strings.Contains(text, "requests,") {
				t.Errorf("the refused page shows results:\n%.600s", text)
			}
			if evaluate[bool](t, browser, `document.getElementById('token-form').hidden`) {
				t.Error("the page does not ask for another token")
			}
		})
	}
}

// jsonResults gets a session's results as JSON, as the page does.
func (f *resultsFixture) jsonResults(session types.NamespacedName, token string) coverage.Report {
	f.t.Helper()
	status, _, body := f.get(session, token, "format=json")
	if status != http.StatusOK {
		f.t.Fatalf("results: status %d: %s", status, body)
	}
	var r coverage.Report
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		f.t.Fatalf("decode the results: %v", err)
	}
	return r
}

// firstOf returns the first operation of a level that is neither
// deprecated nor a legacy watch, so that a hit counts on its level's card.
func firstOf(t *testing.T, cat *catalog.Catalog, level catalog.Level) string {
	t.Helper()
	for _, op := range cat.Operations {
		if op.Level == level && !op.Deprecated && !op.Watch {
			return op.ID
		}
	}
	t.Fatalf("1.37 has no %s operation", level)
	return ""
}

// liveStatus is what the live page says of its last fetch.
func liveStatus(t *testing.T, ctx context.Context) string {
	t.Helper()
	return evaluate[string](t, ctx, `document.getElementById('live-status').textContent`)
}

// evaluate runs a JavaScript expression in the page.
func evaluate[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expression, err)
	}
	return v
}
