package controllers

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	syncclient "github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// startServer builds cmd/syncserver and runs it on a loopback port with the configuration
// the operator wrote for f: the StatefulSet's environment, and the token file and serving
// certificate from its Secrets (paths rewritten to a temp dir). It returns the server's URL.
func startServer(t *testing.T, f *syncv1.SyncedFolder) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "syncserver")
	build := exec.Command("go", "build", "-o", bin, "../cmd/syncserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build syncserver: %v\n%s", err, out)
	}
	creds, tlsSecret, sts := &corev1.Secret{}, &corev1.Secret{}, &appsv1.StatefulSet{}
	for name, obj := range map[string]client.Object{credentialsSecretName(f): creds, tlsSecretName(f): tlsSecret, statefulSetName(f): sts} {
		if err := get(f.Namespace, name, obj); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{keyTokens: creds.Data[keyTokens], keyTLSCert: tlsSecret.Data[keyTLSCert], keyTLSKey: tlsSecret.Data[keyTLSKey]}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	local := map[string]string{
		"SYNCSERVER_LISTEN": addr, "SYNCSERVER_DATA_DIR": filepath.Join(dir, "data"),
		"SYNCSERVER_TOKEN_FILE":    filepath.Join(dir, keyTokens),
		"SYNCSERVER_TLS_CERT_FILE": filepath.Join(dir, keyTLSCert), "SYNCSERVER_TLS_KEY_FILE": filepath.Join(dir, keyTLSKey),
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "SYNCSERVER_LOG_FORMAT=text")
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		v := e.Value
		if l, ok := local[e.Name]; ok {
			v = l
		}
		cmd.Env = append(cmd.Env, e.Name+"="+v)
	}
	// Outside a pod the server reaches the API server (TokenReview) through a kubeconfig.
	cmd.Env = append(cmd.Env, "SYNCSERVER_KUBECONFIG="+serverKubeconfig(t, f, dir))
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Logf("syncserver exit after interrupt: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("syncserver killed after 10s: %v", <-exited)
		}
		logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("syncserver log:\n%s", out)
		}
	})
	return "https://" + addr
}

// agentClient talks to the loopback server as the folder's agent would: its token, and the
// folder's CA verifying the Service's DNS name.
func agentClient(t *testing.T, f *syncv1.SyncedFolder, base string) *syncclient.Client {
	t.Helper()
	creds, cm := &corev1.Secret{}, &corev1.ConfigMap{}
	if err := get(f.Namespace, credentialsSecretName(f), creds); err != nil {
		t.Fatal(err)
	}
	if err := get(f.Namespace, configMapName(f), cm); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(cm.Data[keyCACert]))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverDNSNames(f, "cluster.local")[0], MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := syncclient.New(syncclient.Options{BaseURL: base, Transport: bearerTransport{token: string(creds.Data[keyAgentToken]), next: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// commitFile uploads content as path through the real protocol (one block, then a commit).
func commitFile(t *testing.T, c *syncclient.Client, path string, content []byte) {
	t.Helper()
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.PutBlock(ctx, hash, content, false); err != nil {
		t.Fatalf("upload block of %s: %v", path, err)
	}
	res, err := c.Commit(ctx, []proto.CommitItem{{
		Path: path, Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644, MTimeNs: time.Now().UnixNano(),
		SHA256: hash, Blocks: []proto.Block{{Hash: hash, Size: int64(len(content))}},
	}})
	if err != nil {
		t.Fatalf("commit %s: %v", path, err)
	}
	if len(res) != 1 || res[0].Status != proto.StatusOK {
		t.Fatalf("commit %s: %+v", path, res)
	}
}

// TestStatusFiguresFromARealServer runs the real syncserver with the configuration the
// operator generated, and checks the folder's status reports its live figures.
func TestStatusFiguresFromARealServer(t *testing.T) {
	needEnv(t)
	ns := newNamespace(t)
	f := createFolder(t, ns, "live", nil)
	waitOwned(t, f)
	base := startServer(t, f)
	c := agentClient(t, f, base)
	eventually(t, 30*time.Second, func() error { return c.Readyz(context.Background()) })
	commitFile(t, c, "hello.txt", []byte("hello, world\n"))
	suite.serverAddr.Store(ns+"/live", base)
	t.Cleanup(func() { suite.serverAddr.Delete(ns + "/live") })

	// Play the StatefulSet controller (envtest runs none): the server pod is ready.
	sts := &appsv1.StatefulSet{}
	if err := get(ns, "live", sts); err != nil {
		t.Fatal(err)
	}
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: 1, ReadyReplicas: 1, CurrentReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	if err := suite.client.Status().Update(context.Background(), sts); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "live", syncv1.ConditionReady, metav1.ConditionTrue, syncv1.ReasonReconciled)
	waitStats := func(files, bytes int64) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			got := &syncv1.SyncedFolder{}
			if err := get(ns, "live", got); err != nil {
				return err
			}
			s := got.Status.Stats
			if s == nil {
				return fmt.Errorf("no stats yet")
			}
			if s.Files != files || s.Bytes != bytes || s.Size != humanBytes(bytes) || s.LastChange == nil {
				return fmt.Errorf("stats %+v, want %d files of %d bytes", s, files, bytes)
			}
			return nil
		})
	}
	waitStats(1, 13)
	// Figures are refreshed while the server runs.
	commitFile(t, c, "big.bin", make([]byte, 3000))
	waitStats(2, 3013)
	t.Logf("stats refresh every %s; Size column shows %q", suite.reconciler.statsInterval(), humanBytes(3013))
}
