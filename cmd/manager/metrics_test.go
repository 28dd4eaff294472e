package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/controllers"
	"github.com/syncedfolder/synced-folder/internal/envtestassets"
)

// TestMetricsAuthorization runs the manager binary as a ServiceAccount holding only the
// generated manager-role (config/rbac/role.yaml) against a real API server, with HTTPS
// metrics: a request without a token is 401, a token whose ServiceAccount lacks the
// metrics-reader ClusterRole (config/rbac/metrics_reader_role.yaml) is 403, and one bound to
// it reads Prometheus text. The manager also reconciles a SyncedFolder under that role, so a
// missing RBAC marker fails here.
func TestMetricsAuthorization(t *testing.T) {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: envtestassets.DirOrSkip(t),
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "synced-folder-system"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"controller-manager", "prometheus", "nobody"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind(t, cs, "role.yaml", ns, "controller-manager")
	bind(t, cs, "metrics_reader_role.yaml", ns, "prometheus")

	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := writeTokenKubeconfig(kcPath, cfg, token(t, cs, ns, "controller-manager")); err != nil {
		t.Fatal(err)
	}
	metricsAddr, probe := freeAddr(t), freeAddr(t)
	runManager(t, dir, "--kubeconfig", kcPath, "--health-probe-bind-address", probe,
		"--metrics-bind-address", metricsAddr, "--metrics-secure=true", "--operator-namespace", ns,
		"--server-image", "example.org/sync:metrics", "--agent-image", "example.org/sync:metrics")

	// The serving certificate is self-signed (no cert dir mounted), so the client does not
	// verify it; what is under test is who gets an answer.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test server
	scrape := func(bearer string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type") + "\n" + string(body), err
	}
	poll(t, func() error {
		code, body, err := scrape("")
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("no token: %d %s, want 401", code, body)
		}
		return nil
	})
	// A token the TokenReview rejects is refused too, but controller-runtime's filter answers
	// 500 "Authentication failed" there: the delegating authenticator reports the rejection as
	// an error, not as "unauthenticated".
	if code, body, err := scrape("not-a-token"); err != nil || (code != http.StatusUnauthorized && code != http.StatusInternalServerError) || strings.Contains(body, "# TYPE") {
		t.Errorf("invalid token: %d %v %.200s, want a refusal", code, err, body)
	}
	if code, body, err := scrape(token(t, cs, ns, "nobody")); err != nil || code != http.StatusForbidden {
		t.Errorf("token without metrics-reader: %d %v %.200s, want 403", code, err, body)
	}
	code, body, err := scrape(token(t, cs, ns, "prometheus"))
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics-reader token: %d %v %.200s, want 200", code, err, body)
	}
	if !strings.HasPrefix(body, "text/plain") || !strings.Contains(body, "# TYPE controller_runtime_reconcile_total counter") {
		t.Errorf("metrics are not Prometheus text with controller-runtime's counters: %.300s", body)
	}

	// The manager-role suffices to reconcile a folder: it gets as far as waiting for the
	// server's pod (there is no StatefulSet controller), with no reconcile error.
	ctrl.SetLogger(logr.Discard())
	c, err := client.New(cfg, client.Options{Scheme: controllers.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: "scraped", Namespace: "default"},
		Spec:       syncv1.SyncedFolderSpec{Storage: syncv1.StorageSpec{Size: resource.MustParse("1Gi")}},
	}
	if err := c.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(f), f); err != nil {
			return err
		}
		for _, cond := range f.Status.Conditions {
			if cond.Type == syncv1.ConditionReady && cond.Reason == syncv1.ReasonServerNotReady {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", f.Status.Conditions)
	})
}

// bind creates the ClusterRole of config/rbac/file and binds it to ns/sa.
func bind(t *testing.T, cs kubernetes.Interface, file, ns, sa string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096).Decode(role); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	ctx := context.Background()
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRole %s: %v", role.Name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("bind ClusterRole %s: %v", role.Name, err)
	}
}

// token mints a token of ns/sa through the TokenRequest API.
func token(t *testing.T, cs kubernetes.Interface, ns, sa string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request a token of %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// writeTokenKubeconfig writes a kubeconfig for cfg's API server that authenticates with a
// bearer token.
func writeTokenKubeconfig(path string, cfg *rest.Config, bearer string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: bearer}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "manager"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}
