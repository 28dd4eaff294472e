//go:build e2e

package cluster

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/syncserver"
)

// The host is on the cluster bridge, so the suite talks to a server pod directly at its pod
// IP, verifying the server's certificate with the CA the operator publishes for agents (the
// folder's ConfigMap) under the client Service's name.
const serverPort = 8443

// serverConn is what the host needs to call a folder's server.
type serverConn struct {
	http          *http.Client
	base          string
	operatorToken string
}

// server returns a connection to the current server pod of folder ns/name.
func (e *env) server(ns, folder string) (*serverConn, error) {
	var cm corev1.ConfigMap
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: folder + "-config"}, &cm); err != nil {
		return nil, fmt.Errorf("get the folder's ConfigMap: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
		return nil, fmt.Errorf("ConfigMap %s/%s-config: no CA in ca.crt", ns, folder)
	}
	var creds corev1.Secret
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: folder + "-credentials"}, &creds); err != nil {
		return nil, fmt.Errorf("get the folder's credentials: %w", err)
	}
	var pod corev1.Pod
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: folder + "-0"}, &pod); err != nil {
		return nil, fmt.Errorf("get the server pod: %w", err)
	}
	if pod.Status.PodIP == "" {
		return nil, fmt.Errorf("server pod %s/%s has no IP yet", ns, pod.Name)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: folder + "." + ns + ".svc", MinVersion: tls.VersionTLS12}}
	return &serverConn{
		http:          &http.Client{Transport: tr, Timeout: 15 * time.Second},
		base:          "https://" + net.JoinHostPort(pod.Status.PodIP, fmt.Sprint(serverPort)),
		operatorToken: string(creds.Data["operator-token"]),
	}, nil
}

// get calls GET path with token (the operator's when empty) and returns the status and body.
func (s *serverConn) get(path, token string) (int, []byte, error) {
	if token == "" {
		token = s.operatorToken
	}
	req, err := http.NewRequest(http.MethodGet, s.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// getJSON calls GET path with the operator's token and decodes a 200 answer into v.
func (s *serverConn) getJSON(path string, v any) error {
	code, b, err := s.get(path, "")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode GET %s: %w", path, err)
	}
	return nil
}

// index is the server's GET /index (the original API): path → sha, mtime, version.
func (e *env) index(ns, folder string) (map[string]syncserver.LegacyIndexEntry, error) {
	s, err := e.server(ns, folder)
	if err != nil {
		return nil, err
	}
	idx := map[string]syncserver.LegacyIndexEntry{}
	return idx, s.getJSON("/index", &idx)
}

// auditLog is the server's GET /logs, newest first.
func (e *env) auditLog(ns, folder string) ([]syncserver.LegacyLogRecord, error) {
	s, err := e.server(ns, folder)
	if err != nil {
		return nil, err
	}
	var recs []syncserver.LegacyLogRecord
	return recs, s.getJSON("/logs?limit=1000", &recs)
}

// sha is the lowercase hex SHA-256 of s.
func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// serverHas waits until the server's /index lists name with content's hash (or, with content
// nil, does not list name).
func (e *env) serverHasFunc(ns, folder, name string, content *string) func() (bool, error) {
	return func() (bool, error) {
		idx, err := e.index(ns, folder)
		if err != nil {
			return false, err
		}
		got, ok := idx[name]
		switch {
		case content == nil && ok:
			return false, fmt.Errorf("server still lists %s (%+v)", name, got)
		case content != nil && !ok:
			return false, fmt.Errorf("server does not list %s (index has %d files)", name, len(idx))
		case content != nil && got.SHA != sha(*content):
			return false, fmt.Errorf("server has %s with sha %s, want %s", name, got.SHA, sha(*content))
		}
		return true, nil
	}
}

// saToken asks the API server for a token of service account ns/name for audience.
func (e *env) saToken(ns, name, audience string) (string, error) {
	tr, err := e.cs.CoreV1().ServiceAccounts(ns).CreateToken(e.ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create token for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// audience is the token audience of a folder's server.
func audience(ns, folder string) string { return syncv1.TokenAudience(ns, folder) }
