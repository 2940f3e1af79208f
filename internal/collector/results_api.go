package collector

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

// ResultsPathPrefix is where the manager serves ResultsAPI:
// ResultsPathPrefix + "{namespace}/{name}/results".
const ResultsPathPrefix = "/sessions/"

// DefaultAccessTTL is how long ResultsAPI keeps a verdict on a token and a
// session: a RoleBinding removed (or added) takes effect within it.
const DefaultAccessTTL = 30 * time.Second

// maxAccessVerdicts bounds ResultsAPI's verdict cache; beyond it, expired
// verdicts are dropped, and if none has expired the cache starts over.
const maxAccessVerdicts = 4096

// Releases resolves a session's spec.kubernetesRelease to its catalog.
type Releases interface {
	Resolve(ctx context.Context, release string) (*catalog.Catalog, error)
}

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// ResultsAPI serves a session's live coverage, as the collector holds it in
// memory (newer than the ConfigMaps, which are written on an interval):
//
//	GET /sessions/{namespace}/{name}/results[?format=json|markdown|table][&untested[=false]]
//
// json (the default) is the coverage.Report, untested operations included;
// markdown is the session ConfigMap's report.md, not cut, and lists the
// eligible operations nobody hit unless untested=false; table lists them
// only with untested.
//
// It admits whoever may get the SnoopSession, as kube-rbac-proxy does: the
// caller's bearer token is reviewed by the API server (TokenReview, for the
// API server's own audiences), and the user it names must be allowed to get
// that session (SubjectAccessReview). Without a token, or with one the API
// server does not accept, the answer is 401; without the right, 403 — also
// for a session that does not exist, so that existence is told only to
// those who may read it (404). A session whose results are not loaded (it
// is not Ready, or this replica is not the leader, which alone collects)
// answers 503.
type ResultsAPI struct {
	// Client reads SnoopSessions, from the manager's cache.
	Client     client.Reader
	Aggregator *Aggregator
	Releases   Releases
	// TokenReviews and Access are the API server's TokenReview and
	// SubjectAccessReview endpoints.
	TokenReviews authenticationv1client.TokenReviewInterface
	Access       authorizationv1client.SubjectAccessReviewInterface
	// AccessTTL is how long a verdict (401, 403 or allowed) on a token and
	// a session is kept; zero means DefaultAccessTTL.
	AccessTTL time.Duration

	mu       sync.Mutex
	verdicts map[accessKey]accessVerdict
}

// accessKey is a token, by its hash, asking for a session.
type accessKey struct {
	token   [sha256.Size]byte
	session types.NamespacedName
}

type accessVerdict struct {
	status  int // http.StatusOK, StatusUnauthorized or StatusForbidden
	message string
	expires time.Time
}

func (a *ResultsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	session, ok := sessionOfPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	log := ctrl.LoggerFrom(r.Context()).WithValues("snoopSession", klog.KRef(session.Namespace, session.Name))
	status, msg := a.admit(r, session)
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

// sessionOfPath reads {namespace}/{name} from a results path.
func sessionOfPath(path string) (types.NamespacedName, bool) {
	rest, ok := strings.CutPrefix(path, ResultsPathPrefix)
	if !ok {
		return types.NamespacedName{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] != "results" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: parts[0], Name: parts[1]}, true
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

// report is a session's coverage now, or an error and its status.
func (a *ResultsAPI) report(ctx context.Context, key types.NamespacedName) (*coverage.Report, int, error) {
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
	cat, err := a.Releases.Resolve(ctx, session.Spec.KubernetesRelease)
	if err != nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("resolve release %s of snoopsession %s: %w", session.Spec.KubernetesRelease, key, err)
	}
	st, _, _ := a.Aggregator.Snapshot(key)
	return coverage.NewReport(cat, &st.Delta), http.StatusOK, nil
}

// admit decides whether the request's bearer token may read session:
// http.StatusOK, or the status to answer and why.
func (a *ResultsAPI) admit(r *http.Request, session types.NamespacedName) (int, string) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return http.StatusUnauthorized, "a bearer token is required"
	}
	key := accessKey{token: sha256.Sum256([]byte(token)), session: session}
	now := time.Now()
	a.mu.Lock()
	v, ok := a.verdicts[key]
	a.mu.Unlock()
	if ok && now.Before(v.expires) {
		return v.status, v.message
	}

	status, msg, err := a.review(r.Context(), token, session)
	if err != nil {
		return http.StatusServiceUnavailable, err.Error() // the API server's trouble: not kept
	}
	ttl := a.AccessTTL
	if ttl == 0 {
		ttl = DefaultAccessTTL
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.verdicts == nil {
		a.verdicts = map[accessKey]accessVerdict{}
	}
	if len(a.verdicts) >= maxAccessVerdicts {
		for k, v := range a.verdicts {
			if !now.Before(v.expires) {
				delete(a.verdicts, k)
			}
		}
		if len(a.verdicts) >= maxAccessVerdicts {
			clear(a.verdicts)
		}
	}
	a.verdicts[key] = accessVerdict{status: status, message: msg, expires: now.Add(ttl)}
	return status, msg
}

// review asks the API server who the token is and whether they may get the
// session.
func (a *ResultsAPI) review(ctx context.Context, token string, session types.NamespacedName) (int, string, error) {
	tr, err := a.TokenReviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token}, // no audiences: the API server's own
	}, metav1.CreateOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("review token: %w", err)
	}
	if !tr.Status.Authenticated {
		return http.StatusUnauthorized, "the token is not accepted: " + orDefault(tr.Status.Error, "not authenticated"), nil
	}
	user := tr.Status.User
	extra := make(map[string]authorizationv1.ExtraValue, len(user.Extra))
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.Access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: snoopv1alpha1.GroupVersion.Group, Resource: "snoopsessions", Verb: "get",
			Namespace: session.Namespace, Name: session.Name,
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("review access: %w", err)
	}
	if !sar.Status.Allowed {
		msg := fmt.Sprintf("user %q may not get snoopsession %s", user.Username, session)
		if sar.Status.Reason != "" {
			msg += ": " + sar.Status.Reason
		}
		return http.StatusForbidden, msg, nil
	}
	return http.StatusOK, "", nil
}
