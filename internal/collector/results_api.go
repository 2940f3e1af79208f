package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/htmlreport"
	"apisnoop.dev/kube-apisnoop/internal/provenance"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

// ResultsPathPrefix is where the manager serves ResultsAPI:
// ResultsPathPrefix + "{namespace}/{name}/results" and, for browsers,
// ResultsPathPrefix + "{namespace}/{name}/page".
const ResultsPathPrefix = "/sessions/"

// TokenHeader carries the reader's bearer token when Authorization cannot:
// the API server's service proxy authenticates the caller by Authorization
// and removes it before it proxies, so the live page sends its reader's
// token in this header instead. It is admitted exactly like
// "Authorization: Bearer TOKEN".
const TokenHeader = "X-Apisnoop-Token"

// PageRefresh is how often a live page fetches the results again. The
// collector persists them every two seconds at most; the page needs no more.
const PageRefresh = 5 * time.Second

// ResultsPagePath is the path of a session's live page, which its status
// names (status.resultsPage).
func ResultsPagePath(namespace, name string) string {
	return ResultsPathPrefix + namespace + "/" + name + "/" + pagePath
}

const (
	resultsPath = "results"
	pagePath    = "page"
	writesPath  = "writes"
)

// HistorySubresource is what reading a session's writes asks the API
// server's authorizer for: get on snoopsessions/history. The writes carry
// request bodies (the data of ConfigMaps, say), which a reader of the
// coverage may not be meant to see; RBAC grants it apart.
const HistorySubresource = "history"

// Releases resolves a session's spec.kubernetesRelease to its catalog.
type Releases interface {
	Resolve(ctx context.Context, release string) (*catalog.Catalog, error)
}

// ResultsAPI serves a session's live coverage, as the collector holds it in
// memory (newer than the ConfigMaps, which are written on an interval):
//
//	GET /sessions/{namespace}/{name}/results[?format=json|markdown|table][&untested[=false]]
//	GET /sessions/{namespace}/{name}/page
//	GET /sessions/{namespace}/{name}/writes
//
// json (the default) is the coverage.Report, untested operations included;
// markdown is the session ConfigMap's report.md, not cut, and lists the
// eligible operations nobody hit unless untested=false; table lists them
// only with untested.
//
// writes is the session's writes to objects with their bodies (kept when
// it records bodies, or from audit events that carry them), as an audit
// log (provenance.WritesLog, JSON lines), which kubectl snoop history reads;
// it admits whoever may get snoopsessions/history (HistorySubresource).
//
// The rest admit whoever may get the SnoopSession (Access). Without a token, or
// with one the API server does not accept, the answer is 401; without the
// right, 403 — also
// for a session that does not exist, so that existence is told only to
// those who may read it (404). A session whose results are not loaded (it
// is not Ready, or this replica is not the leader, which alone collects)
// answers 503.
//
// The page is the HTML report of internal/htmlreport for a person with a
// browser: it holds no results and is served to anyone, and its script
// fetches the JSON results with the token its reader gives it (in
// TokenHeader) every PageRefresh, so what it shows passes the same
// authorisation.
type ResultsAPI struct {
	// Client reads SnoopSessions, from the manager's cache.
	Client     client.Reader
	Aggregator *Aggregator
	Releases   Releases
	// Access admits callers.
	Access *Access
}

func (a *ResultsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	session, what, ok := sessionOfPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if what == pagePath {
		servePage(w, r, session)
		return
	}
	if token := r.Header.Get(TokenHeader); token != "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	log := ctrl.LoggerFrom(r.Context()).WithValues("snoopSession", klog.KRef(session.Namespace, session.Name))
	action := Action{
		Group: snoopv1alpha1.GroupVersion.Group, Resource: "snoopsessions", Verb: "get",
		Namespace: session.Namespace, Name: session.Name,
		Describe: "get snoopsession " + session.String(),
	}
	if what == writesPath {
		action.Subresource = HistorySubresource
		action.Describe = "get snoopsessions/" + HistorySubresource + " " + session.String()
	}
	status, msg := a.Access.Admit(r, action)
	if status != http.StatusOK {
		switch status {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="apisnoop"`)
			log.V(1).Info("Results refused", "status", status, "reason", msg)
		case http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "2")
			log.Info("Results not served", "reason", msg)
		default:
			log.V(1).Info("Results refused", "status", status, "reason", msg)
		}
		http.Error(w, msg, status)
		return
	}
	if what == writesPath {
		a.serveWrites(w, r, session)
		return
	}
	format, opts, err := resultsFormat(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rep, status, err := a.report(r.Context(), session)
	if err != nil {
		if status >= http.StatusInternalServerError {
			w.Header().Set("Retry-After", "2")
			log.V(1).Info("Results not served", "reason", err.Error())
		}
		http.Error(w, err.Error(), status)
		return
	}
	// The report names the session's clients; no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	switch format {
	case "json":
		w.Header().Set("Content-Type", "application/json")
	case "markdown":
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	if r.Method == http.MethodHead {
		return
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	_ = report.Write(w, format, rep, opts)
}

// sessionOfPath reads {namespace}/{name} and what is asked for (results,
// page or writes) from a path.
func sessionOfPath(path string) (types.NamespacedName, string, bool) {
	rest, ok := strings.CutPrefix(path, ResultsPathPrefix)
	if !ok {
		return types.NamespacedName{}, "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || (parts[2] != resultsPath && parts[2] != pagePath && parts[2] != writesPath) {
		return types.NamespacedName{}, "", false
	}
	return types.NamespacedName{Namespace: parts[0], Name: parts[1]}, parts[2], true
}

// pageSecurityPolicy lets the page run only its own inline script and
// style, and connect only to its own origin (the results beside it).
const pageSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// servePage writes a session's live page: no results in it, so no
// authorisation; the names in it come from the path, escaped.
func servePage(w http.ResponseWriter, r *http.Request, session types.NamespacedName) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	page := htmlreport.Page{
		Title:  "Live API coverage of SnoopSession " + session.String(),
		Source: "SnoopSession " + session.String(),
	}
	// Relative: through a port-forward or the API server's service proxy
	// alike, the results are beside the page.
	live := htmlreport.Live{ResultsURL: resultsPath + "?format=json", Refresh: PageRefresh, TokenHeader: TokenHeader}
	if err := htmlreport.WriteLive(w, page, live); err != nil {
		ctrl.LoggerFrom(r.Context()).Error(err, "Live page not written", "snoopSession", klog.KRef(session.Namespace, session.Name))
	}
}

// resultsFormat reads ?format and ?untested: json (the default), markdown
// (or md) or table; untested alone or with a true value lists the eligible
// operations nobody hit, which markdown does by default, as report.md.
func resultsFormat(r *http.Request) (string, report.Options, error) {
	q := r.URL.Query()
	format := q.Get("format")
	switch format {
	case "", "json":
		format = "json"
	case "markdown", "md":
		format = "markdown"
	case "table":
	default:
		return "", report.Options{}, fmt.Errorf("unknown format %q: use json, markdown or table", format)
	}
	opts := report.Options{Untested: format == "markdown"}
	if q.Has("untested") {
		if v := q.Get("untested"); v == "" {
			opts.Untested = true
		} else {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return "", report.Options{}, fmt.Errorf("untested=%q: want true or false", v)
			}
			opts.Untested = b
		}
	}
	return format, opts, nil
}

// serveWrites writes the session's writes as an audit log.
func (a *ResultsAPI) serveWrites(w http.ResponseWriter, r *http.Request, key types.NamespacedName) {
	if _, status, err := a.loaded(r.Context(), key); err != nil {
		if status >= http.StatusInternalServerError {
			w.Header().Set("Retry-After", "2")
		}
		http.Error(w, err.Error(), status)
		return
	}
	writes, dropped := a.Aggregator.Writes(key)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/jsonl")
	if dropped > 0 {
		// The log holds the newest writes only; history starts later.
		w.Header().Set(WritesDroppedHeader, strconv.FormatInt(dropped, 10))
	}
	if r.Method == http.MethodHead {
		return
	}
	if err := provenance.WritesLog(w, writes); err != nil {
		ctrl.LoggerFrom(r.Context()).V(1).Info("Writes not served whole", "snoopSession", key, "reason", err.Error())
	}
}

// WritesDroppedHeader says how many older writes the session did not keep
// (coverage.MaxWrites, coverage.MaxWriteBytes).
const WritesDroppedHeader = "X-Apisnoop-Writes-Dropped"

// report is a session's coverage now, or an error and its status.
func (a *ResultsAPI) report(ctx context.Context, key types.NamespacedName) (*coverage.Report, int, error) {
	session, status, err := a.loaded(ctx, key)
	if err != nil {
		return nil, status, err
	}
	cat, err := a.Releases.Resolve(ctx, session.Spec.KubernetesRelease)
	if err != nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("resolve release %s of snoopsession %s: %w", session.Spec.KubernetesRelease, key, err)
	}
	st, _, _ := a.Aggregator.Snapshot(key)
	return coverage.NewReport(cat, &st.Delta), http.StatusOK, nil
}

// loaded is the session whose results the aggregator holds, or an error and
// its status.
func (a *ResultsAPI) loaded(ctx context.Context, key types.NamespacedName) (*snoopv1alpha1.SnoopSession, int, error) {
	session := &snoopv1alpha1.SnoopSession{}
	if err := a.Client.Get(ctx, key, session); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, http.StatusNotFound, fmt.Errorf("snoopsession %s not found", key)
		}
		return nil, http.StatusServiceUnavailable, fmt.Errorf("read snoopsession %s: %w", key, err)
	}
	if !a.Aggregator.Restored(key) {
		msg := fmt.Sprintf("the results of snoopsession %s are not loaded yet", key)
		if c := meta.FindStatusCondition(session.Status.Conditions, snoopv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			msg += ": the session is not Ready"
			if c != nil && c.Message != "" {
				msg += " (" + c.Message + ")"
			}
		}
		return nil, http.StatusServiceUnavailable, errors.New(msg)
	}
	return session, http.StatusOK, nil
}
