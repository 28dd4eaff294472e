package proto

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxPathBytes is the longest path the protocol accepts, in bytes.
const MaxPathBytes = 4096

// maxSegmentBytes matches the name limit of common Linux filesystems.
const maxSegmentBytes = 255

// ErrInvalidPath is wrapped by every CleanPath error.
var ErrInvalidPath = errors.New("invalid path")

// CleanPath checks that p is a normalized folder-relative path and returns it. It is
// strict rather than forgiving: a path that would need rewriting to be canonical is
// refused, so that two spellings can never name one entry.
func CleanPath(p string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrInvalidPath, truncate(p), why)
	}
	switch {
	case p == "":
		return bad("empty")
	case len(p) > MaxPathBytes:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathBytes))
	case !utf8.ValidString(p):
		return bad("not valid UTF-8")
	case strings.ContainsRune(p, 0):
		return bad("contains NUL")
	case strings.ContainsRune(p, '\\'):
		return bad("contains a backslash")
	case strings.HasPrefix(p, "/"):
		return bad("absolute")
	case strings.HasSuffix(p, "/"):
		return bad("ends with a slash")
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return bad("empty segment")
		case seg == ".":
			return bad(`contains a "." segment`)
		case seg == "..":
			return bad(`contains a ".." segment`)
		case len(seg) > maxSegmentBytes:
			return bad(fmt.Sprintf("a segment is longer than %d bytes", maxSegmentBytes))
		}
		for _, r := range seg {
			if r < 0x20 || r == 0x7f {
				return bad("contains a control character")
			}
		}
	}
	return p, nil
}

func truncate(p string) string {
	if len(p) > 64 {
		return p[:64] + "…"
	}
	return p
}

// conflictTimeLayout is the timestamp of a conflict copy's name, in UTC.
const conflictTimeLayout = "20060102-150405"

var conflictRE = regexp.MustCompile(`\.sync-conflict-\d{8}-\d{6}-[^/]*$`)

// ConflictPath returns the name of the conflict copy of p made by agent at t:
// dir/name.sync-conflict-YYYYMMDD-HHMMSS-<agent>.ext. The extension stays last so the
// copy opens with the same program. Characters of agent that cannot stand in a file name
// are replaced.
func ConflictPath(p, agent string, t time.Time) string {
	dir, file := path.Split(p)
	ext := path.Ext(file)
	if ext == file { // a dotfile such as ".bashrc" has no extension
		ext = ""
	}
	base := strings.TrimSuffix(file, ext)
	name := fmt.Sprintf("%s.sync-conflict-%s-%s%s", base, t.UTC().Format(conflictTimeLayout), sanitizeAgent(agent), ext)
	return dir + name
}

// IsConflictPath reports whether p names a conflict copy.
func IsConflictPath(p string) bool {
	file := path.Base(p)
	return conflictRE.MatchString(strings.TrimSuffix(file, path.Ext(file))) || conflictRE.MatchString(file)
}

func sanitizeAgent(agent string) string {
	var b strings.Builder
	for _, r := range agent {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
