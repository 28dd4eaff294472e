package kubeauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestTokenReviewThroughServer runs the real sync server with the TokenReview authenticator
// against the envtest API server, with tokens the TokenRequest API issues.
func TestTokenReviewThroughServer(t *testing.T) {
	needKube(t)
	team := newNamespace(t, "team")
	other := newNamespace(t, "other")
	audience := "sync.syncedfolder.io/" + team + "/docs"
	alice := newWorkload(t, team, "alice")
	bob := newWorkload(t, team, "bob")
	carol := newWorkload(t, other, "carol")

	rc, err := RESTConfig(reviewerKubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	allowed, err := ParseAllowList(team + "/alice")
	if err != nil {
		t.Fatal(err)
	}
	kauth, err := NewForConfig(rc, Config{Audience: audience, Namespace: team, Allowed: allowed, Now: clock.Now,
		PositiveTTL: time.Minute, NegativeTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	static, err := syncserver.ParseTokens(strings.NewReader("operator-token-0123456789 operator\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, syncserver.Chain{static, kauth})
	const operator = "operator-token-0123456789"

	// An allowed service account's pod-bound token: accepted, and the audit log names
	// namespace, pod and service account.
	aliceToken := alice.token(t, audience, true)
	if code, perr := srv.commit(aliceToken, "a.txt"); code != http.StatusOK {
		t.Fatalf("commit with alice's token: %d %s", code, perr.Error)
	}
	wantAgent := team + "/alice-pod/alice"
	var audit proto.AuditResponse
	if code := srv.do("GET", proto.RouteAudit, operator, nil, &audit); code != http.StatusOK || len(audit.Records) != 1 || audit.Records[0].Agent != wantAgent {
		t.Fatalf("audit: %d %+v; want one record by %q", code, audit.Records, wantAgent)
	}
	var logs []syncserver.LegacyLogRecord
	if code := srv.do("GET", proto.RouteLegacyLogs, aliceToken, nil, &logs); code != http.StatusOK || len(logs) != 1 || logs[0].Agent != wantAgent {
		t.Fatalf("/logs: %d %+v", code, logs)
	}
	// A token bound to no pod names the service account alone.
	if agent, err := kauth.Authenticate(context.Background(), alice.token(t, audience, false)); err != nil || agent != team+"/alice" {
		t.Errorf("unbound token: %q, %v", agent, err)
	}

	// The expired token below is the same token signed again with another expiry; signed
	// again with a future one it is accepted, so its refusal is the expiry's doing.
	if code, perr := srv.commit(resign(t, aliceToken, time.Now().Add(time.Hour)), "b.txt"); code != http.StatusOK {
		t.Fatalf("commit with alice's token signed again: %d %s", code, perr.Error)
	}

	before := srv.snapshot()
	refusals := []struct {
		name, token string
		code        int
	}{
		{"wrong audience", alice.token(t, "sync.syncedfolder.io/"+team+"/other-folder", true), http.StatusUnauthorized},
		{"service account of another namespace", carol.token(t, audience, true), http.StatusUnauthorized},
		{"not a token", "not-a-token", http.StatusUnauthorized},
		{"expired token", resign(t, aliceToken, time.Now().Add(-time.Hour)), http.StatusUnauthorized},
		{"service account not on the list", bob.token(t, audience, true), http.StatusForbidden},
	}
	for _, r := range refusals {
		code, perr := srv.commit(r.token, "refused-"+strings.ReplaceAll(r.name, " ", "-"))
		if code != r.code || perr.Error == "" {
			t.Errorf("%s: %d %q, want %d and an error", r.name, code, perr.Error, r.code)
		}
		if got := srv.do("GET", proto.RouteStats, r.token, nil, nil); got != r.code {
			t.Errorf("%s: stats %d, want %d", r.name, got, r.code)
		}
	}
	if _, perr := srv.commit(bob.token(t, audience, true), "x"); !strings.Contains(perr.Error, team+"/bob-pod/bob") {
		t.Errorf("403 does not name the identity: %q", perr.Error)
	}

	// An expired token. The TokenRequest API will not issue one shorter than 10 minutes,
	// so the token is made invalid for real the way a pod's token ends in practice: its
	// pod is deleted, after which the API server refuses it. Until the cached answer
	// expires the server still accepts it; the fake clock then moves past the positive
	// TTL, and the next request asks the API server again. The deletion reaches the API
	// server's token validation through its own informers, so the refusal is polled for.
	if err := kube.cs.CoreV1().Pods(team).Delete(context.Background(), alice.pod, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if code := srv.do("GET", proto.RouteStats, aliceToken, nil, nil); code != http.StatusOK {
		t.Fatalf("cached answer not used after the pod's deletion: %d", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		clock.Add(2 * time.Minute) // past both TTLs
		code := srv.do("GET", proto.RouteStats, aliceToken, nil, nil)
		if code == http.StatusUnauthorized {
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("token of a deleted pod: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	clock.Add(2 * time.Minute)
	if code, perr := srv.commit(aliceToken, "after-revocation"); code != http.StatusUnauthorized {
		t.Errorf("commit with the revoked token: %d %q", code, perr.Error)
	}
	if after := srv.snapshot(); after != before {
		t.Fatalf("refused requests changed the folder: %+v → %+v", before, after)
	}
}

// TestReviewUnavailable: when the API server cannot be reached the server answers 503
// (the agent retries), caches nothing, and changes nothing.
func TestReviewUnavailable(t *testing.T) {
	a, err := NewForConfig(&rest.Config{Host: "https://" + closedPort(t), Timeout: 5 * time.Second},
		Config{Audience: "aud", Namespace: "team"})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, a)
	before := srv.snapshot()
	for range 2 {
		if code, perr := srv.commit("some-token", "x"); code != http.StatusServiceUnavailable {
			t.Fatalf("review unreachable: %d %q", code, perr.Error)
		}
	}
	if n := a.cache.len(); n != 0 {
		t.Errorf("a failed review was cached (%d entries)", n)
	}
	if after := srv.snapshot(); after != before {
		t.Fatalf("refused requests changed the folder: %+v → %+v", before, after)
	}
}

func TestNewValidates(t *testing.T) {
	rc := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, cfg := range []Config{{Namespace: "team"}, {Audience: "aud"}} {
		if _, err := NewForConfig(rc, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(nil, Config{Audience: "a", Namespace: "b"}); err == nil {
		t.Error("New without a client accepted")
	}
	_, err := RESTConfig("/nonexistent/kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Errorf("RESTConfig of a missing file: %v", err)
	}
	a, err := NewForConfig(rc, Config{Audience: "aud", Namespace: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), ""); !errors.Is(err, syncserver.ErrUnauthenticated) {
		t.Errorf("empty token: %v", err)
	}
}
