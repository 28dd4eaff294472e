// Package envtestassets finds the control-plane binaries (etcd and kube-apiserver) that the
// tests starting a real API server through controller-runtime's envtest need.
package envtestassets

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/modroot"
)

// Dir returns the directory holding etcd and kube-apiserver: KUBEBUILDER_ASSETS when set,
// else the one hack/envtest.sh builds from the Go module proxy (cached under bin/; the
// first build takes minutes). Its progress goes to stderr.
func Dir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := modroot.Find()
		if err != nil {
			return "", err
		}
		cmd := exec.Command("bash", filepath.Join(root, "hack", "envtest.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("hack/envtest.sh: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("envtest assets in %s: %w", dir, err)
		}
	}
	return dir, nil
}

// Required reports whether a missing control plane must fail the tests instead of skipping
// them: in CI (CI=true) a missing dependency is a failure, never a skip.
func Required() bool { return os.Getenv("CI") == "true" }

// DirOrSkip returns Dir for one test; without the binaries it skips t, or fails it when
// Required.
func DirOrSkip(t testing.TB) string {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		if Required() {
			t.Fatalf("envtest control plane is required (CI=true): %v", err)
		}
		t.Skipf("envtest control plane unavailable: %v", err)
	}
	return dir
}
