package collector

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// PodIdentity is who a sidecar's token says it is: a pod and its service
// account.
type PodIdentity struct {
	Namespace, Pod, UID, ServiceAccount string
}

// errUnauthenticated is a token the API server does not accept for the
// audience, or one that names no pod.
var errUnauthenticated = errors.New("unauthenticated")

// TokenReviewer verifies sidecars' tokens with the API server. Verdicts are
// kept for a short while, keyed by the token's hash, so that a sidecar
// shipping every few seconds costs one TokenReview a minute.
type TokenReviewer struct {
	Client   authenticationv1client.TokenReviewInterface
	Audience string
	// TTL of a verdict; zero means one minute.
	TTL time.Duration

	verdicts verdictCache[[sha256.Size]byte, tokenVerdict]
}

type tokenVerdict struct {
	id  PodIdentity
	err error
}

// Review returns the pod a token belongs to, or an error wrapping
// errUnauthenticated.
func (t *TokenReviewer) Review(ctx context.Context, token string) (PodIdentity, error) {
	if token == "" {
		return PodIdentity{}, fmt.Errorf("%w: no bearer token", errUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	if v, ok := t.verdicts.get(key, now); ok {
		return v.id, v.err
	}

	id, err := t.review(ctx, token)
	if err != nil && !errors.Is(err, errUnauthenticated) {
		return PodIdentity{}, err // the API server's trouble: not kept
	}
	ttl := t.TTL
	if ttl == 0 {
		ttl = time.Minute
	}
	t.verdicts.put(key, tokenVerdict{id: id, err: err}, now, ttl)
	return id, err
}

func (t *TokenReviewer) review(ctx context.Context, token string) (PodIdentity, error) {
	review, err := t.Client.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{t.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return PodIdentity{}, fmt.Errorf("review token: %w", err)
	}
	st := review.Status
	if !st.Authenticated {
		return PodIdentity{}, fmt.Errorf("%w: %s", errUnauthenticated, orDefault(st.Error, "token not accepted"))
	}
	if !slices.Contains(st.Audiences, t.Audience) {
		return PodIdentity{}, fmt.Errorf("%w: token is not for audience %s", errUnauthenticated, t.Audience)
	}
	ns, sa, err := serviceaccount.SplitUsername(st.User.Username)
	if err != nil {
		return PodIdentity{}, fmt.Errorf("%w: %s is not a service account", errUnauthenticated, st.User.Username)
	}
	pod, uid := first(st.User.Extra[serviceaccount.PodNameKey]), first(st.User.Extra[serviceaccount.PodUIDKey])
	if pod == "" || uid == "" {
		return PodIdentity{}, fmt.Errorf("%w: the token is not bound to a pod", errUnauthenticated)
	}
	return PodIdentity{Namespace: ns, Pod: pod, UID: uid, ServiceAccount: sa}, nil
}

func first(values authenticationv1.ExtraValue) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
