package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
	"github.com/syncedfolder/synced-folder/controllers"
	"github.com/syncedfolder/synced-folder/internal/envtestassets"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestManagerBinary runs the real manager binary against a real API server, as `make run`
// does: it becomes ready, reconciles a SyncedFolder, refuses a bad ENABLE_WEBHOOKS, and stops
// cleanly on SIGTERM.
func TestManagerBinary(t *testing.T) {
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
	user, err := env.AddUser(envtest.User{Name: "manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := managerBinary(t)
	bad := exec.Command(bin, "--kubeconfig", kcPath)
	bad.Env = append(os.Environ(), "ENABLE_WEBHOOKS=maybe")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), `ENABLE_WEBHOOKS="maybe"`) {
		t.Errorf("ENABLE_WEBHOOKS=maybe: err %v, output %s", err, out)
	}

	probe := freeAddr(t)
	stop := runManager(t, dir, "--kubeconfig", kcPath, "--health-probe-bind-address", probe, "--metrics-bind-address", "0",
		"--server-image", "example.org/sync:smoke", "--agent-image", "example.org/sync:smoke")

	poll(t, func() error {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})

	c, err := client.New(cfg, client.Options{Scheme: controllers.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	f := &syncv1.SyncedFolder{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec:       syncv1.SyncedFolderSpec{Storage: syncv1.StorageSpec{Size: resource.MustParse("1Gi")}},
	}
	if err := c.Create(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		sts := &appsv1.StatefulSet{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "smoke"}, sts); err != nil {
			return err
		}
		if img := sts.Spec.Template.Spec.Containers[0].Image; img != "example.org/sync:smoke" {
			return fmt.Errorf("server image %q, want the --server-image flag", img)
		}
		return nil
	})

	if err := stop(); err != nil {
		t.Errorf("manager exited with %v after SIGINT", err)
	}
}

func poll(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var managerBuild struct {
	once sync.Once
	dir  string
	err  error
}

// managerBinary builds the manager once per test binary and returns its path.
func managerBinary(t *testing.T) string {
	t.Helper()
	managerBuild.once.Do(func() {
		if managerBuild.dir, managerBuild.err = os.MkdirTemp("", "manager-test-"); managerBuild.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(managerBuild.dir, "manager"), ".").CombinedOutput()
		if err != nil {
			managerBuild.err = fmt.Errorf("build manager: %w\n%s", err, out)
		}
	})
	if managerBuild.err != nil {
		t.Fatal(managerBuild.err)
	}
	return filepath.Join(managerBuild.dir, "manager")
}

// runManager runs the manager binary with args and webhooks off, its log in dir. stop
// sends SIGINT and returns how the manager exited; the test fails when that takes over
// 30 s. A manager still running at cleanup is stopped the same way, and the log of a
// failed test is printed.
func runManager(t *testing.T, dir string, args ...string) (stop func() error) {
	t.Helper()
	cmd := exec.Command(managerBinary(t), args...)
	cmd.Env = append(os.Environ(), "ENABLE_WEBHOOKS=false")
	logPath := filepath.Join(dir, "manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	var once sync.Once
	var exitErr error
	stop = func() error {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case exitErr = <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("manager killed after not stopping within 30s of SIGINT: %v", <-exited)
				exitErr = errors.New("killed")
			}
		})
		return exitErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Logf("manager exit: %v", err)
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("manager log:\n%s", out)
		}
	})
	return stop
}

func TestMain(m *testing.M) {
	code := m.Run()
	if managerBuild.dir != "" {
		os.RemoveAll(managerBuild.dir)
	}
	os.Exit(code)
}
