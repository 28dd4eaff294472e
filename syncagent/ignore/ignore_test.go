package ignore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	root := t.TempDir()
	lines := []string{
		"# build output",
		"",
		"*.log",
		"!keep.log",
		"build/",
		"/top.txt",
		"docs/*.tmp",
		"cache/**",
		"a/**/z",
		"file?.bak",
		`\#literal`,
		"trailing   ",
		"[0-9].num",
	}
	if err := os.WriteFile(filepath.Join(root, FileName), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(root, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path  string
		isDir bool
		want  bool
	}{
		{"x.log", false, true},
		{"deep/er/x.log", false, true},
		{"keep.log", false, false},
		{"sub/keep.log", false, false},
		{"build", true, true},
		{"build", false, false}, // "build/" names only dirs
		{"build/out.o", false, true},
		{"src/build/out.o", false, true},
		{"top.txt", false, true},
		{"sub/top.txt", false, false},
		{"docs/a.tmp", false, true},
		{"docs/sub/a.tmp", false, false},
		{"cache", true, false},
		{"cache/x", false, true},
		{"cache/x/y", false, true},
		{"a/z", false, true},
		{"a/b/c/z", false, true},
		{"b/a/z", false, false},
		{"file1.bak", false, true},
		{"file12.bak", false, false},
		{"#literal", false, true},
		{"trailing", false, true},
		{"7.num", false, true},
		{"x.num", false, false},
		{"readme.md", false, false},
		// Built-ins.
		{".syncfolder", true, true},
		{".syncfolder/state.db", false, true},
		{"sub/.syncfolder", true, true},
		{TempPrefix + "123", false, true},
		{"sub/" + TempPrefix + "abc", false, true},
		{FileName, false, false},
	}
	for _, c := range cases {
		if got := m.Match(c.path, c.isDir); got != c.want {
			t.Errorf("Match(%q, dir=%v) = %v; want %v", c.path, c.isDir, got, c.want)
		}
	}
}

func TestIgnoreFileItselfIsNeverIgnored(t *testing.T) {
	m, err := Compile([]string{".*", "*"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Match(FileName, false) {
		t.Errorf("%s is ignored", FileName)
	}
	if !m.Match(".other", false) {
		t.Errorf(".other not ignored by .*")
	}
}

func TestNegationCannotReincludeInsideIgnoredDir(t *testing.T) {
	m, err := Compile([]string{"logs/", "!logs/important.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match("logs/important.txt", false) {
		t.Errorf("a file inside an ignored dir was re-included")
	}
}

func TestMissingFileMeansOnlyBuiltins(t *testing.T) {
	m, err := Load(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Match("anything.log", false) || !m.Match(".syncfolder", true) {
		t.Errorf("unexpected matches without %s", FileName)
	}
}

func TestBadPatternIsAnError(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, FileName), []byte("ok.txt\nbad[\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(root, "")
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Load error = %v; want one naming line 2", err)
	}
}

func TestLoadAppliesTheBaseFileFirst(t *testing.T) {
	root := t.TempDir()
	base := filepath.Join(t.TempDir(), "syncignore")
	if err := os.WriteFile(base, []byte("*.tmp\ncache/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The folder's own file comes later, so it can take back a base pattern.
	if err := os.WriteFile(filepath.Join(root, FileName), []byte("!keep.tmp\n*.bak\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(root, base)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		isDir bool
		want  bool
	}{
		{"a.tmp", false, true},
		{"cache", true, true},
		{"keep.tmp", false, false},
		{"x.bak", false, true},
		{"x.txt", false, false},
	} {
		if got := m.Match(c.path, c.isDir); got != c.want {
			t.Errorf("Match(%q) = %v, want %v", c.path, got, c.want)
		}
	}
	if _, err := Load(root, filepath.Join(root, "missing")); err == nil {
		t.Error("a missing base file loaded without an error")
	}
	// A malformed folder file is reported with its own line numbers, not the combined ones.
	if err := os.WriteFile(filepath.Join(root, FileName), []byte("[bad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(root, base); err == nil || !strings.Contains(err.Error(), `.syncignore: line 1 "[bad"`) {
		t.Errorf("malformed .syncignore: err %v", err)
	}
}

// Without patterns, the state dir and temp files are still ignored at any depth.
func TestMatchWithoutPatterns(t *testing.T) {
	m, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		"a": false, "a/b/c": false, "": false, FileName: false, "a/" + FileName: false,
		StateDirName: true, StateDirName + "/x": true, "a/" + StateDirName + "/x": true,
		TempPrefix + "1": true, "a/" + TempPrefix + "1": true, "a/" + TempPrefix + "d/x": true, "a//b": false,
	} {
		if got := m.Match(rel, false); got != want {
			t.Errorf("Match(%q) = %v, want %v", rel, got, want)
		}
	}
}
