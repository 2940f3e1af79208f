package collector

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
)

// DefaultAccessTTL is how long Access keeps a verdict on a token and what it
// asked: a RoleBinding removed (or added) takes effect within it.
const DefaultAccessTTL = 30 * time.Second

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Access admits a request whose bearer token names a user the API server
// allows an action, as kube-rbac-proxy does: the token is reviewed by the
// API server (TokenReview, for the API server's own audiences) and the user
// it names must be allowed the action (SubjectAccessReview). Verdicts are
// kept for TTL, by the token's hash and the action.
type Access struct {
	// TokenReviews and Reviews are the API server's TokenReview and
	// SubjectAccessReview endpoints.
	TokenReviews authenticationv1client.TokenReviewInterface
	Reviews      authorizationv1client.SubjectAccessReviewInterface
	// TTL is how long a verdict (401, 403 or allowed) is kept; zero means
	// DefaultAccessTTL.
	TTL time.Duration

	verdicts verdictCache[accessKey, accessVerdict]
}

// Action is what a request asks to do, as the API server's authorizer sees
// it; Describe is how a refusal names it, like "get snoopsession ns/name".
type Action struct {
	Group, Resource, Subresource, Verb, Namespace, Name string
	Describe                                            string
}

// accessKey is a token, by its hash, asking for an action.
type accessKey struct {
	token  [sha256.Size]byte
	action Action
}

type accessVerdict struct {
	status  int // http.StatusOK, StatusUnauthorized or StatusForbidden
	message string
}

// Admit decides whether the request's bearer token may do action:
// http.StatusOK, or the status to answer (401, 403, or 503 when the API
// server could not be asked) and why.
func (a *Access) Admit(r *http.Request, action Action) (int, string) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return http.StatusUnauthorized, "a bearer token is required"
	}
	key := accessKey{token: sha256.Sum256([]byte(token)), action: action}
	now := time.Now()
	if v, ok := a.verdicts.get(key, now); ok {
		return v.status, v.message
	}

	status, msg, err := a.review(r.Context(), token, action)
	if err != nil {
		return http.StatusServiceUnavailable, err.Error() // the API server's trouble: not kept
	}
	ttl := a.TTL
	if ttl == 0 {
		ttl = DefaultAccessTTL
	}
	a.verdicts.put(key, accessVerdict{status: status, message: msg}, now, ttl)
	return status, msg
}

// review asks the API server who the token is and whether they may do the
// action.
func (a *Access) review(ctx context.Context, token string, action Action) (int, string, error) {
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
	sar, err := a.Reviews.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: action.Group, Resource: action.Resource, Subresource: action.Subresource, Verb: action.Verb,
			Namespace: action.Namespace, Name: action.Name,
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("review access: %w", err)
	}
	if !sar.Status.Allowed {
		msg := fmt.Sprintf("user %q may not %s", user.Username, action.Describe)
		if sar.Status.Reason != "" {
			msg += ": " + sar.Status.Reason
		}
		return http.StatusForbidden, msg, nil
	}
	return http.StatusOK, "", nil
}
