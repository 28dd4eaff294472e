package controllers

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesAreFresh regenerates everything controller-gen writes into a temp dir and
// compares it with the committed files: an API or RBAC marker change without `make manifests`
// fails here.
func TestGeneratedFilesAreFresh(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "hack", "generate.sh"), out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, msg)
	}
	var n int
	err := filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, path)
		n++
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join("..", rel))
		if err != nil {
			t.Errorf("%s is generated but missing from the tree (run `make manifests`): %v", rel, err)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make manifests`", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("generate.sh wrote %d files, want deepcopy, CRD, RBAC and the ServiceMonitor CRD", n)
	}
}
