package kubeauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/syncedfolder/synced-folder/internal/envtestassets"
	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

// The envtest control plane: a real kube-apiserver (with service-account token signing,
// which envtest configures) and etcd. Without one, tests skip, except with CI=true, where
// TestMain fails.
var kube struct {
	env         *envtest.Environment
	cfg         *rest.Config
	cs          *kubernetes.Clientset
	unavailable error
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	assets, err := envtestassets.Dir()
	if err != nil {
		if envtestassets.Required() {
			fmt.Fprintf(os.Stderr, "envtest control plane is required (CI=true): %v\n", err)
			return 1
		}
		kube.unavailable = err
		return m.Run()
	}
	kube.env = &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := kube.env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start envtest: %v\n", err)
		return 1
	}
	defer func() {
		if err := kube.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}()
	kube.cfg = cfg
	if kube.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "clientset: %v\n", err)
		return 1
	}
	return m.Run()
}

func needKube(t *testing.T) {
	t.Helper()
	if kube.unavailable != nil {
		t.Skipf("envtest control plane unavailable: %v", kube.unavailable)
	}
}

// fakeClock is the cache's clock, moved by the test: cache expiry is then a step of the
// test, not a wait.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// reviewerKubeconfig writes a kubeconfig for a user that may do nothing but create
// TokenReviews: the exact permission the operator grants the server, so the test also
// shows that it is enough.
func reviewerKubeconfig(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	n := seq.Add(1)
	user := fmt.Sprintf("syncserver-tokenreviewer-%d", n)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("test-tokenreview-%d", n)},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}},
	}
	if _, err := kube.cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if _, err := kube.cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err := kube.env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// workload is a service account with a pod (never scheduled: envtest runs no kubelet) that
// tokens are bound to.
type workload struct {
	ns, sa, pod string
	uid         types.UID
}

func newWorkload(t *testing.T, ns, sa string) workload {
	t.Helper()
	ctx := context.Background()
	if _, err := kube.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-pod"},
		Spec: corev1.PodSpec{
			ServiceAccountName:           sa,
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "example.org/app:1"}},
		},
	}
	created, err := kube.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return workload{ns: ns, sa: sa, pod: created.Name, uid: created.UID}
}

// token requests a token of the workload's service account for audience, bound to its pod
// (bound=true) like the kubelet's projected token, or not bound to any object.
func (w workload) token(t *testing.T, audience string, bound bool) string {
	t.Helper()
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		Audiences:         []string{audience},
		ExpirationSeconds: ptr.To(int64(600)), // the API's minimum
	}}
	if bound {
		req.Spec.BoundObjectRef = &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: w.pod, UID: w.uid}
	}
	tr, err := kube.cs.CoreV1().ServiceAccounts(w.ns).CreateToken(context.Background(), w.sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request token of %s/%s: %v", w.ns, w.sa, err)
	}
	return tr.Status.Token
}

// seq makes object names unique across tests and -count runs against one control plane.
var seq atomic.Int64

// newNamespace creates a namespace named prefix plus a unique suffix.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, seq.Add(1))
	if _, err := kube.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// folderServer is a real sync server (embedded store, blocks on disk) behind auth.
type folderServer struct {
	t     *testing.T
	url   string
	store store.Store
	bs    *blobs.Store
}

func startServer(t *testing.T, auth syncserver.Authenticator) *folderServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bs, err := blobs.Open(filepath.Join(dir, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv, err := syncserver.New(syncserver.Config{GCInterval: -1}, st, bs, auth, logger)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Shutdown(); hs.Close() })
	return &folderServer{t: t, url: hs.URL, store: st, bs: bs}
}

// do sends a request with token and decodes a JSON answer into out (if not nil).
func (s *folderServer) do(method, route, token string, body, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+route, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: decode %q: %v", method, route, b, err)
		}
	}
	if e, ok := out.(*proto.Error); ok && resp.StatusCode >= 400 {
		_ = json.Unmarshal(b, e)
	}
	return resp.StatusCode
}

// commit uploads one small file as the token's agent.
func (s *folderServer) commit(token, path string) (int, *proto.Error) {
	s.t.Helper()
	content := []byte("content of " + path)
	item := proto.CommitItem{Path: path, Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644, MTimeNs: 1,
		SHA256: sha256Hex(content), Data: content}
	var perr proto.Error
	code := s.do("POST", proto.RouteCommit, token, proto.CommitRequest{Items: []proto.CommitItem{item}}, &perr)
	return code, &perr
}

// snapshot is what a refused request must not change.
type snapshot struct{ seq, blocks, audit int64 }

func (s *folderServer) snapshot() snapshot {
	s.t.Helper()
	st, err := s.store.Stats(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	n, _, err := s.bs.Stats()
	if err != nil {
		s.t.Fatal(err)
	}
	recs, err := s.store.Audit(context.Background(), store.AuditQuery{Limit: 10000})
	if err != nil {
		s.t.Fatal(err)
	}
	return snapshot{seq: st.Seq, blocks: n, audit: int64(len(recs))}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// resign returns token with the same header and claims but the expiry exp (issued an hour
// before it), signed again with the envtest API server's own service-account signing key.
// With exp in the past it is a token the API server issued, except that it has expired:
// TokenRequest refuses lifetimes under ten minutes, so waiting for a real one to expire is
// no option.
func resign(t *testing.T, token string, exp time.Time) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWS: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["iat"] = exp.Add(-time.Hour).Unix()
	claims["nbf"] = exp.Add(-time.Hour).Unix()
	claims["exp"] = exp.Unix()
	if raw, err = json.Marshal(claims); err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw)

	pemBytes, err := os.ReadFile(filepath.Join(kube.env.ControlPlane.GetAPIServer().CertDir, "sa-signer.key"))
	if err != nil {
		t.Fatalf("envtest's service-account signing key: %v", err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("sa-signer.key holds no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
				t.Fatalf("parse sa-signer.key: %v", err)
			}
		}
	}
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey: // RS256
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:]); err != nil {
			t.Fatal(err)
		}
	case *ecdsa.PrivateKey: // ES256: r and s, 32 bytes each
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	default:
		t.Fatalf("sa-signer.key holds a %T", key)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}
