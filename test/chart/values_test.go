package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// valueLine is one key of values.yaml: its dotted path, whether it holds a value on its own
// line (a leaf, or an empty map or list), and whether a comment sits right above it.
type valueLine struct {
	path      string
	leaf      bool
	commented bool
	line      int
}

var keyLine = regexp.MustCompile(`^(\s*)([A-Za-z0-9_]+):\s*(.*)$`)

func readValues(t *testing.T) []valueLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []valueLine
	var stack []string
	commented := false
	for i, l := range strings.Split(string(b), "\n") {
		trim := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(trim, "#"):
			commented = true
			continue
		case trim == "" || strings.HasPrefix(trim, "- "):
			commented = false
			continue
		}
		m := keyLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("values.yaml line %d: cannot read %q", i+1, l)
		}
		depth := len(m[1]) / 2
		if depth > len(stack) {
			t.Fatalf("values.yaml line %d: indentation skips a level", i+1)
		}
		stack = append(stack[:depth], m[2])
		out = append(out, valueLine{path: strings.Join(stack, "."), leaf: m[3] != "", commented: commented, line: i + 1})
		commented = false
	}
	return out
}

// TestValuesDocumented checks the README's values table against values.yaml: every row
// names a value that exists and is commented there, and every value is covered by a row
// (its own or an ancestor's, for free-form maps such as operator.resources).
func TestValuesDocumented(t *testing.T) {
	values := readValues(t)
	byPath := map[string]valueLine{}
	for _, v := range values {
		byPath[v.path] = v
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = true
		v, ok := byPath[m[1]]
		if !ok {
			t.Errorf("README documents %s, which values.yaml does not have", m[1])
		} else if !v.commented {
			t.Errorf("values.yaml line %d: %s has no comment above it", v.line, v.path)
		}
	}
	if len(rows) < 20 {
		t.Fatalf("README values table has %d rows; not read", len(rows))
	}
	for _, v := range values {
		if !v.leaf {
			continue
		}
		covered := false
		for p := v.path; p != ""; {
			if rows[p] {
				covered = true
				break
			}
			i := strings.LastIndex(p, ".")
			if i < 0 {
				break
			}
			p = p[:i]
		}
		if !covered {
			t.Errorf("values.yaml line %d: %s is missing from the README values table", v.line, v.path)
		}
	}
}
