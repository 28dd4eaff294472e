package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestPrehashedFilesAreTakenOnlyWithTheirStatKey(t *testing.T) {
	dir, s, l := setup(t)
	s.Prehashed = &Prehash{}
	put(t, filepath.Join(dir, "d/same"), "same content")
	put(t, filepath.Join(dir, "d/changed"), "before")
	ctx := context.Background()
	s.Prehash(ctx, []string{"d", "d/same", "d/changed", "d/missing"})
	if n := s.Prehashed.Len(); n != 2 {
		t.Fatalf("prehashed %d files, want 2 (the dir and a missing path are skipped)", n)
	}
	// Changed after it was hashed ahead: its size (so its stat key) differs.
	put(t, filepath.Join(dir, "d/changed"), "after, longer")
	ups, err := s.Paths(ctx, []string{"d/same", "d/changed"}, l)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, u := range ups {
		got[u.Path] = u.Entry.SHA256
	}
	if got["d/same"] != sum("same content") {
		t.Errorf("d/same: sha %q, want %q", got["d/same"], sum("same content"))
	}
	if got["d/changed"] != sum("after, longer") {
		t.Errorf("d/changed: sha %q, want the new content's %q", got["d/changed"], sum("after, longer"))
	}
	if n := s.Prehashed.Len(); n != 0 {
		t.Errorf("%d results left after the scan took them", n)
	}
}

func TestPrehashSkipsFilesOfMoreThanOneBlock(t *testing.T) {
	dir, s, _ := setup(t)
	s.Prehashed = &Prehash{}
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 65<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Prehash(context.Background(), []string{"big"})
	if n := s.Prehashed.Len(); n != 0 {
		t.Errorf("prehashed %d files, want 0", n)
	}
}
