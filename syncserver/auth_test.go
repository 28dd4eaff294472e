package syncserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestParseTokens(t *testing.T) {
	a, err := ParseTokens(strings.NewReader("# agents\n\n  tok-aaaaaaaaaaaaaaaa   laptop  \ntok-bbbbbbbbbbbbbbbb ns/pod\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2 {
		t.Fatalf("%d tokens", a.Len())
	}
	for token, want := range map[string]string{"tok-aaaaaaaaaaaaaaaa": "laptop", "tok-bbbbbbbbbbbbbbbb": "ns/pod"} {
		if got, err := a.Authenticate(context.Background(), token); err != nil || got != want {
			t.Errorf("Authenticate(%q) = %q, %v", token, got, err)
		}
	}
	for _, bad := range []string{"", "tok-aaaaaaaaaaaaaaaaX", "laptop"} {
		if _, err := a.Authenticate(context.Background(), bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	for in, want := range map[string]string{
		"tok-aaaaaaaaaaaaaaaa\n":                           "line 1",
		"# c\ntok-aaaaaaaaaaaaaaaa a b\n":                  "line 2",
		"short name\n":                                     "shorter than 16",
		"tok-aaaaaaaaaaaaaaaa a\ntok-aaaaaaaaaaaaaaaa b\n": "duplicate",
		"# only comments\n":                                "no tokens",
		"tok-aaaaaaaaaaaaaaaa a\x01\n":                     "non-printable",
	} {
		_, err := ParseTokens(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTokens(%q) = %v, want an error mentioning %q", in, err, want)
		}
	}
	f := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(f, []byte("x y z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokenFile(f); err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("LoadTokenFile of a bad file: %v", err)
	}
}

func TestTokenAuth(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader("secret-token-0001xx alice\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withAuth(tokens))
	before := e.snapshot()
	for _, tok := range []string{"", "wrong-token-000000000"} {
		e.token = tok
		var body proto.Error
		code, _ := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{inlineItem("x", 0, []byte("x"))}}, &body)
		if code != http.StatusUnauthorized || body.Error == "" {
			t.Fatalf("token %q: %d %+v", tok, code, body)
		}
		for _, route := range []string{proto.RouteLegacyIndex, proto.RouteChanges, proto.RouteStats} {
			if code, _ := e.do("GET", route, nil, nil); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %d", route, tok, code)
			}
		}
		// Probes and metrics need no token.
		for _, route := range []string{proto.RouteHealthz, proto.RouteReadyz, proto.RouteMetrics} {
			if code, _ := e.do("GET", route, nil, nil); code != 200 {
				t.Errorf("%s without a token: %d", route, code)
			}
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused requests changed the folder: %+v → %+v", before, after)
	}
	e.token = "secret-token-0001xx"
	r := e.commit(inlineItem("x", 0, []byte("x")))[0]
	if r.Status != proto.StatusOK || r.Entry.ModifiedBy != "alice" {
		t.Fatalf("authenticated commit: %+v", r)
	}
	var logs []LegacyLogRecord
	e.do("GET", proto.RouteLegacyLogs, nil, &logs)
	if len(logs) != 1 || logs[0].Agent != "alice" {
		t.Fatalf("audit agent: %+v", logs)
	}
}

func TestCheckListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8080", "[::1]:0", "localhost:9", "127.1.2.3:80"} {
		if err := CheckListen(ok, false); err != nil {
			t.Errorf("CheckListen(%q, no auth) = %v", ok, err)
		}
	}
	for _, bad := range []string{":8080", "0.0.0.0:8080", "10.0.0.1:80", "[::]:80", "example.com:80"} {
		err := CheckListen(bad, false)
		if err == nil || !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "--token-file") {
			t.Errorf("CheckListen(%q, no auth) = %v; want a refusal saying why", bad, err)
		}
		if err := CheckListen(bad, true); err != nil {
			t.Errorf("CheckListen(%q, auth) = %v", bad, err)
		}
	}
	if err := CheckListen("nonsense", true); err == nil {
		t.Error("CheckListen accepted an address without a port")
	}
}

// refuseAs is an Authenticator standing in for a remote check (the TokenReview
// authenticator, tested against a real API server in syncserver/kubeauth): it knows one
// token and answers every other with err.
type refuseAs struct {
	token, agent string
	err          error
}

func (a refuseAs) Authenticate(_ context.Context, token string) (string, error) {
	if token == a.token {
		return a.agent, nil
	}
	return "team/pod/bob", a.err
}

func TestChainAndRefusalCodes(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader("secret-token-0001xx operator\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		refusal error
		code    int
	}{
		{fmt.Errorf("%w: expired", ErrUnauthenticated), http.StatusUnauthorized},
		{fmt.Errorf("%w: not on the list", ErrForbidden), http.StatusForbidden},
		{errors.New("connection refused"), http.StatusServiceUnavailable},
	} {
		e := newEnv(t, withAuth(Chain{tokens, refuseAs{token: "sa-token", agent: "team/web-0/alice", err: tc.refusal}}))
		before := e.snapshot()
		e.token = "other-token"
		var body proto.Error
		code, _ := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{inlineItem("x", 0, []byte("x"))}}, &body)
		if code != tc.code || body.Error == "" {
			t.Errorf("refusal %v: %d %+v, want %d", tc.refusal, code, body, tc.code)
		}
		if tc.code == http.StatusForbidden && !strings.Contains(body.Error, "team/pod/bob") {
			t.Errorf("403 does not name the identity: %q", body.Error)
		}
		if after := e.snapshot(); after != before {
			t.Fatalf("refused request changed the folder: %+v → %+v", before, after)
		}
		// Both members of the chain accept their own tokens.
		for token, agent := range map[string]string{"secret-token-0001xx": "operator", "sa-token": "team/web-0/alice"} {
			e.token = token
			if r := e.commit(inlineItem("f-"+agent[:4], 0, []byte(agent))); r[0].Status != proto.StatusOK || r[0].Entry.ModifiedBy != agent {
				t.Errorf("token of %s: %+v", agent, r[0])
			}
		}
	}
	if _, err := (Chain{}).Authenticate(context.Background(), "x"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("empty chain: %v", err)
	}
}
