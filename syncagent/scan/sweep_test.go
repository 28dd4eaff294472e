package scan

import (
	"context"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// skippedByDirs is Skipped as it was written before: rel and each path.Dir of it.
func skippedByDirs(skip map[string]bool, rel string) bool {
	for p := rel; ; p = path.Dir(p) {
		if skip[p] {
			return true
		}
		if !strings.Contains(p, "/") {
			return false
		}
	}
}

func TestSkippedChecksThePathAndEveryParent(t *testing.T) {
	skips := []map[string]bool{nil, {".syncfolder": true}, {"a/b": true}, {"a": true, "x/y/z": true},
		{"a": false}, {"": true}, {"x/y/z": true}}
	rels := []string{"", "a", "b", "a/b", "a/bc", "a/b/c", "ab/c", ".syncfolder", ".syncfolder/state.db", "a/",
		"x/y", "x/y/z", "x/y/z/w", "x/y/zz", "q/.syncfolder", "a/b/c/d/e"}
	for _, skip := range skips {
		s := &Scanner{Skip: skip}
		for _, rel := range rels {
			if got, want := s.Skipped(rel), skippedByDirs(skip, rel); got != want {
				t.Errorf("Skip %v, Skipped(%q) = %v, want %v", skip, rel, got, want)
			}
		}
	}
}

// FullSweep reports temp entries (files and dirs, at any depth, not under Skip) and the
// ignored dirs it does not enter, and scans exactly as Full does.
func TestFullSweepReportsTempEntriesAndIgnoredDirs(t *testing.T) {
	dir, s, l := setup(t)
	put(t, filepath.Join(dir, "a/f"), "1")
	put(t, filepath.Join(dir, "a/"+TempPrefix+"x"), "tmp")
	put(t, filepath.Join(dir, TempPrefix+"dir/f"), "tmp")
	put(t, filepath.Join(dir, "build/"+TempPrefix+"y"), "tmp in an ignored dir")
	put(t, filepath.Join(dir, "build.txt"), "an ignored file")
	put(t, filepath.Join(dir, ".syncfolder/"+TempPrefix+"z"), "under Skip")
	s.Ignore = func(rel string, isDir bool) bool { return rel == "build" || rel == "build.txt" }
	var temps, ignored []string
	sw := &Sweep{
		Temp: func(rel string, isDir bool) {
			temps = append(temps, rel)
			if isDir != (rel == TempPrefix+"dir") {
				t.Errorf("Temp(%q, isDir=%v)", rel, isDir)
			}
		},
		IgnoredDir: func(rel string) { ignored = append(ignored, rel) },
	}
	ups, err := s.FullSweep(context.Background(), l, sw)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(temps)
	if want := []string{TempPrefix + "dir", "a/" + TempPrefix + "x"}; !reflect.DeepEqual(temps, want) {
		t.Errorf("temps %q, want %q", temps, want)
	}
	if want := []string{"build"}; !reflect.DeepEqual(ignored, want) {
		t.Errorf("ignored dirs %q, want %q", ignored, want)
	}
	// The same scan without a sweep finds the same trees.
	_, s2, l2 := setup(t)
	s2.Root, s2.Ignore = s.Root, s.Ignore
	ups2, err := s2.Full(context.Background(), l2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(localTree(l), localTree(l2)) || !reflect.DeepEqual(indexOf(l), indexOf(l2)) || len(ups) != len(ups2) {
		t.Errorf("FullSweep %v / %d updates, Full %v / %d", localTree(l), len(ups), localTree(l2), len(ups2))
	}
}
