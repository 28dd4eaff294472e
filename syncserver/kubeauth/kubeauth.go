// Package kubeauth authenticates agents running in Kubernetes pods: their bearer token is a
// projected service-account token whose audience is the folder's server, verified with a
// TokenReview against the cluster's API server. It is the only package of the engine that
// imports k8s.io/..., so that the local build of the server and the agent stay free of it.
package kubeauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"golang.org/x/sync/singleflight"

	"github.com/syncedfolder/synced-folder/syncserver"
)

// Defaults of Config.
const (
	// DefaultPositiveTTL bounds how long a revoked token (its pod deleted) keeps working.
	DefaultPositiveTTL = 30 * time.Second
	// DefaultNegativeTTL is shorter: a refusal may come from a pod or service account that
	// is being created, and it must not lock an agent out for long.
	DefaultNegativeTTL = 5 * time.Second
	// DefaultCacheSize bounds the cache's memory whatever tokens callers invent.
	DefaultCacheSize = 4096
	// reviewTimeout bounds one TokenReview call.
	reviewTimeout = 10 * time.Second
)

// ExtraPodName is the user extra the API server sets on a token bound to a pod.
const ExtraPodName = "authentication.kubernetes.io/pod-name"

// serviceAccountPrefix starts the user name of every service account.
const serviceAccountPrefix = "system:serviceaccount:"

// inClusterNamespaceFile holds the namespace of the pod the process runs in.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// TokenReviewer creates TokenReviews; client-go's TokenReviewInterface implements it.
type TokenReviewer interface {
	Create(ctx context.Context, review *authv1.TokenReview, opts metav1.CreateOptions) (*authv1.TokenReview, error)
}

// Config configures an Authenticator.
type Config struct {
	// Audience is the audience every accepted token must carry (the folder's,
	// api/v1alpha1.TokenAudience).
	Audience string
	// Namespace is the folder's namespace.
	Namespace string
	// Allowed lists the service accounts that may sync; empty allows every service
	// account of Namespace.
	Allowed []Rule
	// PositiveTTL, NegativeTTL and CacheSize tune the answer cache (zero: the defaults;
	// a negative CacheSize disables caching).
	PositiveTTL, NegativeTTL time.Duration
	CacheSize                int
	// Now is the clock of the cache (time.Now if nil).
	Now func() time.Time
}

// Authenticator is a syncserver.Authenticator for projected service-account tokens.
type Authenticator struct {
	reviews TokenReviewer
	cfg     Config
	// namespaces are those whose service accounts this server knows: the folder's and
	// those the allow list names. A token of any other namespace is not authenticated
	// (401) rather than forbidden: for this server, no such identity exists.
	namespaces []string
	cache      *cache
	flight     singleflight.Group
}

// New returns an Authenticator that reviews tokens through reviews.
func New(reviews TokenReviewer, cfg Config) (*Authenticator, error) {
	if reviews == nil {
		return nil, errors.New("kubeauth: a TokenReview client is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("kubeauth: an audience is required")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kubeauth: the folder's namespace is required")
	}
	if len(cfg.Allowed) == 0 {
		cfg.Allowed = []Rule{{Namespace: cfg.Namespace, Name: "*"}}
	}
	if cfg.PositiveTTL <= 0 {
		cfg.PositiveTTL = DefaultPositiveTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{reviews: reviews, cfg: cfg, namespaces: []string{cfg.Namespace}, cache: newCache(cfg.CacheSize)}
	for _, r := range cfg.Allowed {
		if !slices.Contains(a.namespaces, r.Namespace) {
			a.namespaces = append(a.namespaces, r.Namespace)
		}
	}
	return a, nil
}

// RESTConfig returns the configuration to reach the API server: the kubeconfig file at
// path, or the pod's in-cluster configuration when path is empty.
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("load in-cluster configuration (outside a pod give --kubeconfig): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q: %w", path, err)
	}
	return c, nil
}

// NewForConfig returns an Authenticator that reviews tokens with the API server of rc.
func NewForConfig(rc *rest.Config, cfg Config) (*Authenticator, error) {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "syncserver"
	// client-go's default (5 per second) would queue the reviews of a few hundred agents
	// whose cached answers expire together; the cache keeps the steady rate far lower.
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	cs, err := authclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create TokenReview client: %w", err)
	}
	return New(cs.TokenReviews(), cfg)
}

// InClusterNamespace returns the namespace of the pod the process runs in.
func InClusterNamespace() (string, error) {
	b, err := os.ReadFile(inClusterNamespaceFile)
	if err != nil {
		return "", fmt.Errorf("read the pod's namespace: %w", err)
	}
	ns := strings.TrimSpace(string(b))
	if ns == "" {
		return "", fmt.Errorf("read the pod's namespace: %s is empty", inClusterNamespaceFile)
	}
	return ns, nil
}

// Authenticate reviews token (or reuses a recent answer) and returns the agent identity
// "<namespace>/<pod>/<serviceaccount>" ("<namespace>/<serviceaccount>" for a token not
// bound to a pod). It refuses with syncserver.ErrUnauthenticated a token the API server
// does not authenticate, one without the folder's audience, and one of a namespace the
// server does not know; with syncserver.ErrForbidden a service account not on the allow
// list. A failed review call is returned as is (the server answers 503) and not cached.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no bearer token", syncserver.ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	if ans, ok := a.cache.get(key, a.cfg.Now()); ok {
		return ans.agent, ans.err
	}
	// Concurrent requests with one token (an agent starting many transfers) share one
	// review; it runs detached from any one caller's cancellation, bounded by its own
	// timeout.
	v, err, _ := a.flight.Do(string(key[:]), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reviewTimeout)
		defer cancel()
		review, err := a.reviews.Create(rctx, &authv1.TokenReview{
			Spec: authv1.TokenReviewSpec{Token: token, Audiences: []string{a.cfg.Audience}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("create TokenReview: %w", err)
		}
		ans := a.decide(review.Status)
		ttl := a.cfg.PositiveTTL
		if ans.err != nil {
			ttl = a.cfg.NegativeTTL
		}
		a.cache.put(key, ans, a.cfg.Now().Add(ttl))
		return ans, nil
	})
	if err != nil {
		return "", err
	}
	ans := v.(answer)
	return ans.agent, ans.err
}

// decide turns a review's status into an answer.
func (a *Authenticator) decide(st authv1.TokenReviewStatus) answer {
	unauth := func(format string, args ...any) answer {
		return answer{err: fmt.Errorf("%w: %s", syncserver.ErrUnauthenticated, fmt.Sprintf(format, args...))}
	}
	if !st.Authenticated {
		if st.Error != "" {
			return unauth("token not authenticated: %s", st.Error)
		}
		return unauth("token not authenticated (invalid, expired, revoked, or for another audience)")
	}
	if !slices.Contains(st.Audiences, a.cfg.Audience) {
		return unauth("token audiences %q do not include %q", st.Audiences, a.cfg.Audience)
	}
	ns, sa, ok := splitServiceAccount(st.User.Username)
	if !ok {
		return unauth("user %q is not a service account", st.User.Username)
	}
	if !slices.Contains(a.namespaces, ns) {
		return unauth("service account %s/%s is of namespace %q; this folder serves %q", ns, sa, ns, a.namespaces)
	}
	agent := ns + "/" + sa
	if pods := st.User.Extra[ExtraPodName]; len(pods) == 1 && pods[0] != "" {
		agent = ns + "/" + pods[0] + "/" + sa
	}
	for _, r := range a.cfg.Allowed {
		if r.allows(ns, sa) {
			return answer{agent: agent}
		}
	}
	return answer{agent: agent, err: fmt.Errorf("%w: service account %s/%s is not on the folder's access list", syncserver.ErrForbidden, ns, sa)}
}

// splitServiceAccount splits "system:serviceaccount:NS:NAME".
func splitServiceAccount(user string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, serviceAccountPrefix)
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}
