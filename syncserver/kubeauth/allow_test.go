package kubeauth

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"

	"github.com/syncedfolder/synced-folder/syncserver"
)

func TestParseAllowList(t *testing.T) {
	for in, want := range map[string][]Rule{
		"":                          nil,
		"  ":                        nil,
		"team/alice":                {{"team", "alice"}},
		" team/alice , team/* ":     {{"team", "alice"}, {"team", "*"}},
		"team/alice,team/alice":     {{"team", "alice"}},
		"a/sa.with.dots,b-2/x":      {{"a", "sa.with.dots"}, {"b-2", "x"}},
		"team/*,other/builder-bot1": {{"team", "*"}, {"other", "builder-bot1"}},
	} {
		got, err := ParseAllowList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseAllowList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"team":             "NAMESPACE/NAME",
		"team/alice,":      `""`,
		"team/a/b":         "NAMESPACE/NAME",
		"Team/alice":       `namespace "Team"`,
		"/alice":           `namespace ""`,
		"team/":            `name ""`,
		"team/Alice":       `name "Alice"`,
		"team/al ice":      `name "al ice"`,
		"team/*x":          `name "*x"`,
		"team/alice,other": `"other"`,
	} {
		_, err := ParseAllowList(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAllowList(%q) = %v; want an error mentioning %s", in, err, want)
		}
	}
	if s := (Rule{"team", "*"}).String(); s != "team/*" {
		t.Errorf("String = %q", s)
	}
}

// TestDecide covers the review outcomes the API server can return, including those the
// envtest API server never produces (a user that is not a service account).
func TestDecide(t *testing.T) {
	a, err := New(noReviews{}, Config{Audience: "aud", Namespace: "team", Allowed: []Rule{{"team", "alice"}, {"ops", "*"}}})
	if err != nil {
		t.Fatal(err)
	}
	sa := func(ns, name, pod string, auds ...string) authv1.TokenReviewStatus {
		st := authv1.TokenReviewStatus{Authenticated: true, Audiences: auds,
			User: authv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + name}}
		if pod != "" {
			st.User.Extra = map[string]authv1.ExtraValue{ExtraPodName: {pod}}
		}
		return st
	}
	for _, tc := range []struct {
		name   string
		st     authv1.TokenReviewStatus
		agent  string
		refuse error
	}{
		{"allowed, bound to a pod", sa("team", "alice", "web-0", "aud"), "team/web-0/alice", nil},
		{"allowed, no pod", sa("team", "alice", "", "aud"), "team/alice", nil},
		{"allowed by a namespace wildcard", sa("ops", "anyone", "job-1", "other", "aud"), "ops/job-1/anyone", nil},
		{"not authenticated", authv1.TokenReviewStatus{Error: "token expired"}, "", syncserver.ErrUnauthenticated},
		{"audience missing", sa("team", "alice", "web-0", "other"), "", syncserver.ErrUnauthenticated},
		{"not a service account", authv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"aud"}, User: authv1.UserInfo{Username: "alice@example.org"}}, "", syncserver.ErrUnauthenticated},
		{"malformed service account", authv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"aud"}, User: authv1.UserInfo{Username: "system:serviceaccount:team"}}, "", syncserver.ErrUnauthenticated},
		{"namespace the folder does not serve", sa("elsewhere", "alice", "p", "aud"), "", syncserver.ErrUnauthenticated},
		{"not on the list", sa("team", "bob", "web-1", "aud"), "team/web-1/bob", syncserver.ErrForbidden},
	} {
		ans := a.decide(tc.st)
		if ans.agent != tc.agent || !errors.Is(ans.err, tc.refuse) || (tc.refuse == nil) != (ans.err == nil) {
			t.Errorf("%s: agent %q, err %v; want %q, %v", tc.name, ans.agent, ans.err, tc.agent, tc.refuse)
		}
	}
	// The default list is every service account of the folder's namespace.
	d, err := New(noReviews{}, Config{Audience: "aud", Namespace: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if ans := d.decide(sa("team", "anyone", "", "aud")); ans.err != nil {
		t.Errorf("default list refused team/anyone: %v", ans.err)
	}
	if ans := d.decide(sa("other", "anyone", "", "aud")); !errors.Is(ans.err, syncserver.ErrUnauthenticated) {
		t.Errorf("default list: other/anyone: %v", ans.err)
	}
}

func TestCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCache(3)
	key := func(i int) digest { return digest{byte(i)} }
	c.put(key(1), answer{agent: "one"}, now.Add(time.Second))
	if a, ok := c.get(key(1), now); !ok || a.agent != "one" {
		t.Fatalf("get 1 = %+v, %v", a, ok)
	}
	if _, ok := c.get(key(1), now.Add(time.Second)); ok {
		t.Error("entry used at its expiry")
	}
	if c.len() != 0 {
		t.Errorf("expired entry kept: %d", c.len())
	}
	// Bounded: the oldest entries go first, whatever their expiry.
	for i := 1; i <= 5; i++ {
		c.put(key(i), answer{agent: fmt.Sprint(i), err: syncserver.ErrUnauthenticated}, now.Add(time.Hour))
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d entries, max 3", c.len())
	}
	for i := 1; i <= 5; i++ {
		a, ok := c.get(key(i), now)
		if ok != (i >= 3) {
			t.Errorf("entry %d present = %v", i, ok)
		}
		if ok && (a.agent != fmt.Sprint(i) || !errors.Is(a.err, syncserver.ErrUnauthenticated)) {
			t.Errorf("entry %d = %+v", i, a)
		}
	}
	// Replacing a key does not grow the cache.
	c.put(key(5), answer{agent: "five"}, now.Add(time.Hour))
	if a, _ := c.get(key(5), now); c.len() != 3 || a.agent != "five" {
		t.Errorf("after replace: len %d, %+v", c.len(), a)
	}
	off := newCache(0)
	off.put(key(1), answer{agent: "x"}, now.Add(time.Hour))
	if _, ok := off.get(key(1), now); ok {
		t.Error("a disabled cache kept an entry")
	}
}

// noReviews is a TokenReviewer for tests that only call decide.
type noReviews struct{ TokenReviewer }
