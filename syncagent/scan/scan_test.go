package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func setup(t *testing.T) (string, *Scanner, *trees.Trees) {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return dir, &Scanner{Root: root, Skip: map[string]bool{".syncfolder": true}},
		trees.New(0)
}

func put(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rehashed(ups []Update) []string {
	var out []string
	for _, u := range ups {
		if !u.Deleted && u.Entry.Type == proto.TypeFile {
			out = append(out, u.Path)
		}
	}
	sort.Strings(out)
	return out
}

func TestIndexCacheSkipsUnchangedFiles(t *testing.T) {
	dir, s, l := setup(t)
	put(t, filepath.Join(dir, "a.txt"), "alpha")
	put(t, filepath.Join(dir, "sub/b.txt"), "bravo")
	put(t, filepath.Join(dir, "sub/c.txt"), "charlie")
	ctx := context.Background()
	ups, err := s.Full(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := rehashed(ups); len(got) != 3 {
		t.Fatalf("first scan hashed %v", got)
	}
	if localTree(l)["sub/b.txt"].SHA256.String() != chunk.SumHex([]byte("bravo")) || localTree(l)["sub"].Type != proto.TypeDir {
		t.Errorf("tree %+v", localTree(l))
	}
	ups, err = s.Full(ctx, l)
	if err != nil || len(ups) != 0 {
		t.Fatalf("unchanged rescan: %d updates, %v", len(ups), err)
	}
	// Same size, new content: the mtime gives it away.
	put(t, filepath.Join(dir, "sub/b.txt"), "BRAVO")
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(dir, "sub/b.txt"), future, future); err != nil {
		t.Fatal(err)
	}
	// Only the mode changes.
	if err := os.Chmod(filepath.Join(dir, "a.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	ups, err = s.Full(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := rehashed(ups); len(got) != 2 || got[0] != "a.txt" || got[1] != "sub/b.txt" {
		t.Errorf("re-hashed %v, want a.txt and sub/b.txt", got)
	}
	if localTree(l)["sub/b.txt"].SHA256.String() != chunk.SumHex([]byte("BRAVO")) || localTree(l)["a.txt"].Mode != 0o600 {
		t.Errorf("tree not updated: %+v", localTree(l))
	}
	if err := os.Remove(filepath.Join(dir, "sub/c.txt")); err != nil {
		t.Fatal(err)
	}
	ups, err = s.Full(ctx, l)
	if err != nil || len(ups) != 1 || !ups[0].Deleted || ups[0].Path != "sub/c.txt" {
		t.Errorf("after delete: %+v, %v", ups, err)
	}
	if _, ok := localTree(l)["sub/c.txt"]; ok {
		t.Errorf("deleted file still in tree")
	}
}

func TestSkipsStateDirTempFilesAndLinksOut(t *testing.T) {
	dir, s, l := setup(t)
	outside := t.TempDir()
	put(t, filepath.Join(outside, "secret"), "not ours")
	put(t, filepath.Join(dir, ".syncfolder/state.db"), "x")
	put(t, filepath.Join(dir, "d/"+TempPrefix+"123"), "partial download")
	if err := os.Symlink(outside, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Full(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	want := plan.Tree{"d": localTree(l)["d"], "out": localTree(l)["out"]}
	if len(localTree(l)) != 2 || localTree(l)["out"].Type != proto.TypeSymlink || localTree(l)["out"].Target != outside {
		t.Errorf("tree %+v, want %+v", localTree(l), want)
	}
}

func TestPathsRescansSubtrees(t *testing.T) {
	dir, s, l := setup(t)
	put(t, filepath.Join(dir, "keep"), "k")
	put(t, filepath.Join(dir, "old/x"), "x")
	ctx := context.Background()
	if _, err := s.Full(ctx, l); err != nil {
		t.Fatal(err)
	}
	// A dir renamed: the watcher reports both names.
	if err := os.Rename(filepath.Join(dir, "old"), filepath.Join(dir, "new")); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "new/deep/y"), "y")
	if _, err := s.Paths(ctx, []string{"old", "new"}, l); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"keep", "new", "new/x", "new/deep", "new/deep/y"} {
		if _, ok := localTree(l)[p]; !ok {
			t.Errorf("%s missing from tree", p)
		}
	}
	for _, p := range []string{"old", "old/x"} {
		if _, ok := localTree(l)[p]; ok {
			t.Errorf("%s still in tree", p)
		}
		if _, ok := indexOf(l)[p]; ok {
			t.Errorf("%s still in index", p)
		}
	}
}

// A large file renamed is matched to its index entry by its stat key and not hashed
// again: named in a path scan, listed in a new dir's listing (where it is not stat'ed
// before it is opened: readDir's lazy entries), and found by a full scan.
func TestRenamedLargeFileIsNotHashedAgain(t *testing.T) {
	for _, tc := range []struct {
		name, to string
		scan     func(ctx context.Context, s *Scanner, l *trees.Trees) ([]Update, error)
	}{
		{"paths", "new.bin", func(ctx context.Context, s *Scanner, l *trees.Trees) ([]Update, error) {
			return s.Paths(ctx, []string{"new.bin", "old.bin"}, l)
		}},
		{"new dir", "sub/new.bin", func(ctx context.Context, s *Scanner, l *trees.Trees) ([]Update, error) {
			return s.Paths(ctx, []string{"sub", "old.bin"}, l)
		}},
		{"full", "sub/new.bin", func(ctx context.Context, s *Scanner, l *trees.Trees) ([]Update, error) {
			return s.Full(ctx, l)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, s, l := setup(t)
			blocks := map[string][]proto.Block{}
			s.Blocks = func(p string) ([]proto.Block, chunk.Sums, error) { return blocks[p], chunk.Sums{}, nil }
			data := make([]byte, 3<<20)
			for i := range data {
				data[i] = byte(i ^ i>>9)
			}
			if err := os.WriteFile(filepath.Join(dir, "old.bin"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			indexInto(t, s, l, blocks)
			to := filepath.Join(dir, filepath.FromSlash(tc.to))
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "old.bin"), to); err != nil {
				t.Fatal(err)
			}
			// Change the bytes in place but restore the stat key (same inode, size, mtime):
			// had the scanner hashed the file, it would find another hash than the index's.
			fi, err := os.Stat(to)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(to, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("tampered"), 100); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.Chtimes(to, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			ups, err := tc.scan(ctx, s, l)
			if err != nil {
				t.Fatal(err)
			}
			var got *Update
			for i := range ups {
				if ups[i].Path == tc.to {
					got = &ups[i]
				}
			}
			if got == nil || got.Entry.SHA256.String() != chunk.SumHex(data) || len(got.Blocks) != len(blocks["old.bin"]) {
				t.Fatalf("%s update %+v; want the old index entry carried over", tc.to, got)
			}
			if _, ok := localTree(l)["old.bin"]; ok {
				t.Errorf("old.bin still in tree")
			}
			if localTree(l)[tc.to].SHA256.String() != chunk.SumHex(data) {
				t.Errorf("%s not in tree", tc.to)
			}
		})
	}
}

// TestFullDropsEveryEntryNotOnDisk checks that a full scan drops what the disk no longer
// holds from the Local tree and the index each, also when the two disagree (a conflict
// move leaves a Local-tree node without an index entry), and when only one entry of
// one of them is stale.
func TestFullDropsEveryEntryNotOnDisk(t *testing.T) {
	file := trees.IndexEntry{Type: proto.TypeFile, SHA256: plan.HashOf([]byte("0")), Size: 1, Mode: 0o644}
	for _, tc := range []struct {
		name        string
		tree, index []string // stale entries added before the scan
	}{
		{name: "tree only", tree: []string{"gone.txt"}},
		{name: "index only", index: []string{"sub/gone.txt"}},
		{name: "both", tree: []string{"x"}, index: []string{"y"}},
		{name: "same path", tree: []string{"sub"}, index: []string{"sub"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, s, l := setup(t)
			put(t, filepath.Join(dir, "a.txt"), "alpha")
			ctx := context.Background()
			if _, err := s.Full(ctx, l); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.tree {
				l.Local.Set(p, file.Node())
			}
			for _, p := range tc.index {
				l.Index.Set(p, file)
			}
			ups, err := s.Full(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			if len(localTree(l)) != 1 || len(indexOf(l)) != 1 {
				t.Fatalf("after the scan: tree %v, index %v", localTree(l), indexOf(l))
			}
			if _, ok := indexOf(l)["a.txt"]; !ok {
				t.Fatalf("the file on disk left the index: %v", indexOf(l))
			}
			var deleted []string
			for _, u := range ups {
				if u.Deleted {
					deleted = append(deleted, u.Path)
				}
			}
			sort.Strings(deleted)
			if want := tc.index; len(deleted) != len(want) || len(want) > 0 && deleted[0] != want[0] {
				t.Fatalf("deleted updates %v, want %v", deleted, want)
			}
		})
	}
}

func TestPathsOfADirDropsItsVanishedChildren(t *testing.T) {
	dir, s, l := setup(t)
	for _, p := range []string{"d/a", "d/b", "d/sub/c", "d/sub/e", "other/f"} {
		put(t, filepath.Join(dir, p), p)
	}
	ctx := context.Background()
	if _, err := s.Full(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "d/a")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "d/sub")); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "d/b"), "changed content")
	// Only the dir is reported, as after a burst the watcher could not name one by one.
	ups, err := s.Paths(ctx, []string{"d"}, l)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, u := range ups {
		if u.Deleted {
			deleted = append(deleted, u.Path)
		}
	}
	sort.Strings(deleted)
	if want := []string{"d/a", "d/sub", "d/sub/c", "d/sub/e"}; !equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	if got := rehashed(ups); !equal(got, []string{"d/b"}) {
		t.Errorf("rehashed %v, want [d/b]", got)
	}
	for _, p := range []string{"d", "d/b", "other", "other/f"} {
		if _, ok := localTree(l)[p]; !ok {
			t.Errorf("%s missing from tree", p)
		}
	}
	for _, p := range []string{"d/a", "d/sub", "d/sub/c", "d/sub/e"} {
		if _, ok := localTree(l)[p]; ok {
			t.Errorf("%s still in tree", p)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// localTree is the store's Local tree as a map, for comparisons.
func localTree(l *trees.Trees) plan.Tree { return maps.Collect(l.Local.All()) }

// indexOf is the store's index cache as a map, for comparisons.
func indexOf(l *trees.Trees) map[string]trees.IndexEntry { return maps.Collect(l.Index.All()) }

// TestRecordTakesHashedFilesInSlices checks that with Record set, the hashed files of a
// large batch go to it a slice at a time, each exactly once, while the trees get every
// file and the scans return only the other updates; and that Record's error ends a scan.
func TestRecordTakesHashedFilesInSlices(t *testing.T) {
	for _, how := range []string{"Full", "Paths"} {
		t.Run(how, func(t *testing.T) {
			dir, s, l := setup(t)
			const n = hashSlice + 10
			for i := range n {
				put(t, filepath.Join(dir, "d", fmt.Sprintf("%05d", i)), fmt.Sprint(i))
			}
			var slices []int
			recorded := map[string]bool{}
			s.Record = func(_ context.Context, ups []Update) error {
				slices = append(slices, len(ups))
				for _, u := range ups {
					if recorded[u.Path] || u.Entry.SHA256.IsZero() {
						t.Errorf("%s recorded twice or without a hash", u.Path)
					}
					recorded[u.Path] = true
				}
				return nil
			}
			scan := func() ([]Update, error) {
				if how == "Full" {
					return s.Full(context.Background(), l)
				}
				return s.Paths(context.Background(), []string{"d"}, l)
			}
			ups, err := scan()
			if err != nil {
				t.Fatal(err)
			}
			if len(slices) != 2 || slices[0] != hashSlice || slices[1] != 10 || len(recorded) != n {
				t.Errorf("Record took slices %v (%d files), want [%d 10]", slices, len(recorded), hashSlice)
			}
			if len(ups) != 1 || ups[0].Path != "d" {
				t.Errorf("the scan returned %d updates, want the dir's alone", len(ups))
			}
			if l.Index.Len() != n+1 || l.Local.Len() != n+1 {
				t.Errorf("index %d, Local tree %d, want %d each", l.Index.Len(), l.Local.Len(), n+1)
			}
			put(t, filepath.Join(dir, "d", "00000"), "changed")
			boom := errors.New("boom")
			s.Record = func(context.Context, []Update) error { return boom }
			if _, err := scan(); !errors.Is(err, boom) {
				t.Errorf("a failing Record: the scan returned %v", err)
			}
		})
	}
}

// Paths given with their dir, twice, or under a deleted dir are rescanned once each as
// part of the outermost one, with the same result as the outermost paths alone.
func TestPathsUnderAnotherAreCoveredByIt(t *testing.T) {
	if got := outermost([]string{"a/b/c", "a-b", "a/b", "a", "a/b", "b/x", "a-b/y", "b/xy"}); !slices.Equal(got, []string{"a", "a-b", "b/x", "b/xy"}) {
		t.Errorf("outermost: %v", got)
	}
	dir, s, l := setup(t)
	put(t, filepath.Join(dir, "gone/f"), "1")
	put(t, filepath.Join(dir, "d/keep"), "k")
	ctx := context.Background()
	if _, err := s.Full(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "d/new/x"), "x")
	put(t, filepath.Join(dir, "d/keep"), "changed")
	ups, err := s.Paths(ctx, []string{"d/new/x", "gone/f", "d", "d/keep", "gone", "d/new"}, l)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, u := range ups {
		seen[u.Path]++
	}
	for _, p := range []string{"gone", "gone/f", "d/keep", "d/new", "d/new/x"} {
		if seen[p] != 1 {
			t.Errorf("%s: %d updates, want 1 (all: %v)", p, seen[p], seen)
		}
	}
	if n, ok := localTree(l)["d/keep"]; !ok || n.Size != int64(len("changed")) {
		t.Errorf("d/keep in tree: %+v %v", n, ok)
	}
	if _, ok := localTree(l)["gone/f"]; ok {
		t.Error("gone/f still in the tree")
	}
}

// A dir replaced by a file, reported with its old content: the content goes from the
// trees with the dir (the paths below it are covered by it, and not visited on their own).
func TestPathsOfADirReplacedByAFileDropsItsContent(t *testing.T) {
	dir, s, l := setup(t)
	put(t, filepath.Join(dir, "was-dir/inner.txt"), "inside")
	put(t, filepath.Join(dir, "was-dir/sub/deep.txt"), "deep")
	ctx := context.Background()
	if _, err := s.Full(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "was-dir")); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "was-dir"), "file now")
	if _, err := s.Paths(ctx, []string{"was-dir/inner.txt", "was-dir"}, l); err != nil {
		t.Fatal(err)
	}
	if n, ok := localTree(l)["was-dir"]; !ok || n.Type != proto.TypeFile {
		t.Errorf("was-dir in the tree: %+v %v; want the file", n, ok)
	}
	for _, p := range []string{"was-dir/inner.txt", "was-dir/sub", "was-dir/sub/deep.txt"} {
		if _, ok := localTree(l)[p]; ok {
			t.Errorf("%s still in the tree", p)
		}
		if _, ok := indexOf(l)[p]; ok {
			t.Errorf("%s still in the index", p)
		}
	}
}

// An edited large file is cut against the blocks its path's index entry holds
// (chunk.Rehash): the blocks are those a fresh cut gives, the unchanged ones the
// indexed ones.
func TestEditedLargeFileIsCutAgainstItsIndexedBlocks(t *testing.T) {
	dir, s, l := setup(t)
	blocks := map[string][]proto.Block{}
	sums := map[string]chunk.Sums{}
	var asked []string
	s.Blocks = func(p string) ([]proto.Block, chunk.Sums, error) {
		asked = append(asked, p)
		return blocks[p], sums[p], nil
	}
	data := make([]byte, 10<<20)
	for i := range data {
		data[i] = byte(i*7 ^ i>>11 ^ i>>17)
	}
	name := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "small.txt"), "small")
	ctx := context.Background()
	ups, err := s.Full(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		blocks[u.Path], sums[u.Path] = u.Blocks, u.Sums
	}
	if len(blocks["big.bin"]) < 3 || len(sums["big.bin"].Fast) != len(blocks["big.bin"]) || len(sums["big.bin"].Marks) != 1 {
		t.Fatalf("big.bin cut into %d blocks; the test needs several", len(blocks["big.bin"]))
	}
	data[9<<20] ^= 0xff
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "small.txt"), "small, edited")
	asked = nil
	ups, err = s.Paths(ctx, []string{"big.bin", "small.txt"}, l)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []string{"big.bin"}) {
		t.Errorf("indexed blocks asked for %v; want big.bin's only", asked)
	}
	want, err := chunk.Hash(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		if u.Path != "big.bin" {
			continue
		}
		if u.Entry.SHA256 != plan.Hash(want.Sum) || !slices.Equal(u.Blocks, want.Blocks) || !slices.Equal(u.Fast, want.Fast) || len(u.Marks) != 1 {
			t.Fatalf("big.bin: %s, %d blocks, %d fast sums, %d marks; want %s, %d blocks, their sums and a mark", u.Entry.SHA256, len(u.Blocks), len(u.Fast), len(u.Marks), want.SHA256, len(want.Blocks))
		}
		if n := len(blocks["big.bin"]) - len(u.Blocks); n > 2 || n < -2 {
			t.Errorf("%d blocks against %d before a one-byte edit", len(u.Blocks), len(blocks["big.bin"]))
		}
		return
	}
	t.Fatalf("no update of big.bin in %v", rehashed(ups))
}

// indexInto runs a full scan and keeps the block lists it found in blocks (what the
// agent's index would hold).
func indexInto(t *testing.T, s *Scanner, l *trees.Trees, blocks map[string][]proto.Block) {
	t.Helper()
	ups, err := s.Full(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		blocks[u.Path] = u.Blocks
	}
}
