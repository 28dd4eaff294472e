package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver"
)

func TestSizeAndDurationFlags(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512MiB": 512 << 20, "64GiB": 64 << 30, "2K": 2048, "3 MiB": 3 << 20} {
		var f sizeFlag
		if err := f.Set(in); err != nil || f.n != want {
			t.Errorf("size %q = %d, %v; want %d", in, f.n, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "0", "12XB", "1.5GiB", "99999999999TiB"} {
		var f sizeFlag
		if err := f.Set(bad); err == nil {
			t.Errorf("size %q accepted as %d", bad, f.n)
		}
	}
	for in, want := range map[string]time.Duration{"720h": 720 * time.Hour, "30d": 30 * 24 * time.Hour, "0": 0, "1.5d": 36 * time.Hour} {
		var f durationFlag
		if err := f.Set(in); err != nil || f.d != want {
			t.Errorf("duration %q = %v, %v; want %v", in, f.d, err, want)
		}
	}
	for _, bad := range []string{"x", "-1h", "d", "-2d"} {
		var f durationFlag
		if err := f.Set(bad); err == nil {
			t.Errorf("duration %q accepted", bad)
		}
	}
}

func TestEnvFillsFlagsNotGiven(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "")
	dataDir := fs.String("data-dir", "./data", "")
	keep := fs.Int("keep-versions", 10, "")
	if err := fs.Parse([]string{"--data-dir", "/cli"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SYNCSERVER_LISTEN": "127.0.0.1:9", "SYNCSERVER_DATA_DIR": "/env", "SYNCSERVER_KEEP_VERSIONS": "3"}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *listen != "127.0.0.1:9" || *dataDir != "/cli" || *keep != 3 {
		t.Fatalf("listen %q dataDir %q keep %d", *listen, *dataDir, *keep)
	}
	env["SYNCSERVER_KEEP_VERSIONS"] = "many"
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Int("keep-versions", 10, "")
	err := applyEnv(fs2, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "SYNCSERVER_KEEP_VERSIONS") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"--max-file-size", "lots"},
		{"--keep-versions", "-2"},
		{"--gc-grace", "1s"},
		{"--log-format", "xml"},
		{"--listen", "0.0.0.0:8080"},
		{"--pprof-listen", "0.0.0.0:6060"},
		{"--pprof-listen", "example.org:6060"},
		{"--pprof-listen", "6060"},
		{"extra-arg"},
	} {
		var stderr bytes.Buffer
		env := func(string) string { return "" }
		if code := run(args, env, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and a message", args, code, stderr.String())
		}
	}
}

// --direct-io takes a boolean, from the command line or the environment.
func TestDirectIOFlagTakesABoolean(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--direct-io=maybe"}, nil, `invalid boolean value "maybe" for -direct-io`},
		{nil, map[string]string{"SYNCSERVER_DIRECT_IO": "sometimes"}, "SYNCSERVER_DIRECT_IO (flag --direct-io)"},
	} {
		var stderr bytes.Buffer
		if code := run(tc.args, func(k string) string { return tc.env[k] }, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q, %v) = %d, stderr %q; want 2 and %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
	}
}

func TestTokenReviewFlags(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--allowed-service-accounts", "team/*"}, "--tokenreview-audience"},
		{[]string{"--kubeconfig", "/etc/kube"}, "--tokenreview-audience"},
		{[]string{"--tokenreview-audience", "a b"}, "one audience"},
		{[]string{"--tokenreview-audience", "aud", "--allowed-service-accounts", "team"}, "NAMESPACE/NAME"},
		{[]string{"--tokenreview-audience", "aud", "--tokenreview-namespace", "Team_1"}, "--tokenreview-namespace"},
		{[]string{"--tokenreview-audience", "aud", "--kubeconfig", "/nonexistent/kubeconfig"}, "--kubeconfig"},
		// Not in a pod and no kubeconfig: the in-cluster configuration cannot be had.
		{[]string{"--tokenreview-audience", "aud", "--tokenreview-namespace", "team", "--listen", "0.0.0.0:8443"}, "in-cluster"},
	} {
		var stderr bytes.Buffer
		if code := run(tc.args, env, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and a message mentioning %q", tc.args, code, stderr.String(), tc.want)
		}
	}

	// TokenReview counts as authentication for the loopback rule.
	r := reviewFlags{audience: "sync.syncedfolder.io/team/docs", namespace: "team", allowed: "team/alice, other/*"}
	opts := syncserverOptions(t, "0.0.0.0:8443")
	if err := validate(opts, 10, "auto", r); err != nil {
		t.Errorf("TokenReview on 0.0.0.0: %v", err)
	}
	if err := validate(opts, 10, "auto", reviewFlags{}); err == nil {
		t.Error("no authentication on 0.0.0.0 accepted")
	}

	// Without --tokenreview-namespace the pod's namespace is required.
	_, err := reviewFlags{audience: "aud"}.authenticator(func() (string, error) { return "", errors.New("no such file") })
	if err == nil || !strings.Contains(err.Error(), "--tokenreview-namespace") {
		t.Errorf("authenticator without a namespace: %v", err)
	}
}

func syncserverOptions(t *testing.T, listen string) syncserver.Options {
	t.Helper()
	def := syncserver.DefaultConfig()
	return syncserver.Options{Listen: listen, DataDir: t.TempDir(), Config: def}
}
