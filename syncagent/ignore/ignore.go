// Package ignore decides which paths of a synced folder the agent leaves alone: the
// patterns of the folder's .syncignore file (gitignore syntax) plus built-in ignores for
// the agent's own state dir and temp files.
//
// It has its own matcher rather than github.com/sabhiram/go-gitignore because that
// library treats "?" as a literal, cannot tell a dir from a file (so "build/" would
// also hide a file named build), and turns a malformed pattern into a nil regexp that
// panics on the first match instead of an error.
package ignore

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// FileName is the ignore file at the folder root. It syncs like any other file.
const FileName = ".syncignore"

// StateDirName is the default name of the agent's state dir inside the folder.
const StateDirName = ".syncfolder"

// TempPrefix starts the name of every temp file the agent writes inside the folder
// (downloads in progress); such files are never synced, at any depth.
const TempPrefix = ".syncfolder-tmp-"

// Matcher answers whether a folder-relative path is ignored. The zero value is not
// usable; build one with Load or Compile.
type Matcher struct {
	rules []rule
}

type rule struct {
	segs    []string // glob per path segment; "**" spans any number of segments
	negate  bool
	dirOnly bool
	line    int
	text    string
}

// Load reads root/.syncignore (a missing file means no patterns) and returns its
// Matcher, built-in ignores included. baseFile, when not empty, names a file of patterns
// that come first, so the folder's own .syncignore can override them (as git's
// core.excludesFile under .gitignore); unlike .syncignore it must exist, because it is
// configuration the agent was started with.
func Load(root, baseFile string) (*Matcher, error) {
	var lines []string
	if baseFile != "" {
		if _, err := LoadFile(baseFile); err != nil {
			return nil, err
		}
		base, err := readLines(baseFile)
		if err != nil {
			return nil, fmt.Errorf("ignore file: %w", err)
		}
		lines = base
	}
	own, err := readLines(filepath.Join(root, FileName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ignore file: %w", err)
	}
	if _, err := Compile(own); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName, err)
	}
	return Compile(append(lines, own...))
}

// LoadFile returns the Matcher of one file of patterns; the file must exist.
func LoadFile(name string) (*Matcher, error) {
	lines, err := readLines(name)
	if err != nil {
		return nil, fmt.Errorf("ignore file: %w", err)
	}
	m, err := Compile(lines)
	if err != nil {
		return nil, fmt.Errorf("ignore file %s: %w", name, err)
	}
	return m, nil
}

// readLines returns the lines of the file at name.
func readLines(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return lines, nil
}

// Compile builds a Matcher from the lines of an ignore file. A malformed pattern is an
// error naming its line, so that a typo never silently syncs what it meant to hide.
func Compile(lines []string) (*Matcher, error) {
	m := &Matcher{}
	for i, raw := range lines {
		r, ok := parseLine(raw)
		if !ok {
			continue
		}
		r.line, r.text = i+1, raw
		for _, s := range r.segs {
			if s == "**" {
				continue
			}
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("line %d %q: %w", i+1, raw, err)
			}
		}
		m.rules = append(m.rules, r)
	}
	return m, nil
}

func parseLine(line string) (rule, bool) {
	line = strings.TrimRight(line, "\r")
	line = trimTrailingSpaces(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return rule{}, false
	}
	var r rule
	if strings.HasPrefix(line, "!") {
		r.negate = true
		line = line[1:]
	} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") {
		r.dirOnly = true
		line = strings.TrimRight(line, "/")
	}
	if line == "" {
		return rule{}, false
	}
	// A slash anywhere but at the end anchors the pattern at the root; otherwise it
	// matches a name at any depth.
	anchored := strings.Contains(line, "/")
	line = strings.TrimPrefix(line, "/")
	r.segs = strings.Split(line, "/")
	if !anchored {
		r.segs = append([]string{"**"}, r.segs...)
	}
	return r, true
}

// trimTrailingSpaces drops trailing spaces unless escaped with a backslash.
func trimTrailingSpaces(s string) string {
	for strings.HasSuffix(s, " ") && !strings.HasSuffix(s, `\ `) {
		s = s[:len(s)-1]
	}
	return s
}

// Match reports whether relPath (slash-separated, relative to the folder root) is
// ignored; isDir says whether it names a directory. As in git, everything inside an
// ignored dir is ignored, and a later pattern overrides an earlier one.
func (m *Matcher) Match(relPath string, isDir bool) bool {
	if relPath == FileName {
		return false
	}
	for rest, more := relPath, true; more; {
		var s string
		s, rest, more = strings.Cut(rest, "/")
		if s == StateDirName || strings.HasPrefix(s, TempPrefix) {
			return true
		}
	}
	if len(m.rules) == 0 {
		return false // no pattern: nothing more to split the path for
	}
	segs := strings.Split(relPath, "/")
	for i := 1; i < len(segs); i++ {
		if m.matchOne(segs[:i], true) {
			return true
		}
	}
	return m.matchOne(segs, isDir)
}

// matchOne applies the rules to one path, the last matching rule deciding.
func (m *Matcher) matchOne(segs []string, isDir bool) bool {
	ignored := false
	for _, r := range m.rules {
		if r.dirOnly && !isDir {
			continue
		}
		if matchSegs(r.segs, segs) {
			ignored = !r.negate
		}
	}
	return ignored
}

func matchSegs(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		if len(pat) == 1 {
			return len(segs) > 0 // "dir/**" is what is inside dir, not dir itself
		}
		for i := 0; i <= len(segs); i++ {
			if matchSegs(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 {
		return false
	}
	ok, _ := path.Match(pat[0], segs[0]) // validated by Compile
	return ok && matchSegs(pat[1:], segs[1:])
}
