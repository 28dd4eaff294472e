package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Gen produces the pseudo-random content of one repetition; every repetition and system
// gets its own seed because Syncthing (and our agent) reuse identical blocks found in any
// local file, which would make a repeated data set unfairly cheap.
type Gen struct {
	rnd *rand.ChaCha8
	num *rand.Rand
}

// NewGen returns the generator of seed.
func NewGen(seed uint64) *Gen {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	c := rand.NewChaCha8(key)
	return &Gen{rnd: c, num: rand.New(c)}
}

// Bytes returns n random bytes.
func (g *Gen) Bytes(n int) []byte {
	b := make([]byte, n)
	_, _ = g.rnd.Read(b)
	return b
}

// Intn returns a number in [0, n).
func (g *Gen) Intn(n int) int { return g.num.IntN(n) }

// WriteFile writes size random bytes to path, creating its directory.
func (g *Gen) WriteFile(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir of %q: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %q: %w", path, err)
	}
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		_, _ = g.rnd.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return fmt.Errorf("write %q: %w", path, err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %q: %w", path, err)
	}
	return nil
}

// SmallTree writes count files of 1–16 KiB under root/prefix, 100 to a directory, and
// returns their paths (relative to root) and sizes.
func (g *Gen) SmallTree(root, prefix string, count int) (map[string]int64, error) {
	out := make(map[string]int64, count)
	for i := range count {
		rel := fmt.Sprintf("%s/d%03d/f%05d.bin", prefix, i/100, i)
		size := int64(1024 + g.Intn(15*1024+1))
		p := filepath.Join(root, filepath.FromSlash(rel))
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, fmt.Errorf("create dir of %q: %w", p, err)
			}
		}
		if err := os.WriteFile(p, g.Bytes(int(size)), 0o644); err != nil {
			return nil, fmt.Errorf("write %q: %w", p, err)
		}
		out[rel] = size
	}
	return out, nil
}

// isMeta reports whether a relative path belongs to a system's own bookkeeping (state
// dirs, temp files, markers): every such name starts with a dot, generated data never does.
func isMeta(rel string) bool {
	for seg := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}

// Manifest maps a relative path to "file SHA256" or "dir".
type Manifest map[string]string

// ReadManifest hashes every file under root, leaving the systems' bookkeeping out.
func ReadManifest(root string) (Manifest, error) {
	m := Manifest{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if isMeta(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			m[rel] = "dir"
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		m[rel] = "file " + hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read manifest of %q: %w", root, err)
	}
	return m, nil
}

// Diff describes how two manifests differ, briefly; empty when equal.
func (m Manifest) Diff(other Manifest) string {
	var out []string
	for p, v := range m {
		if w, ok := other[p]; !ok {
			out = append(out, fmt.Sprintf("%q missing", p))
		} else if v != w {
			out = append(out, fmt.Sprintf("%q differs", p))
		}
	}
	for p := range other {
		if _, ok := m[p]; !ok {
			out = append(out, fmt.Sprintf("%q extra", p))
		}
	}
	sort.Strings(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("… %d in all", len(out)))
	}
	return strings.Join(out, "; ")
}

// statKey identifies one version of a file on disk cheaply: a replaced or rewritten file
// changes inode, size or mtime.
type statKey struct {
	ino, size int64
	mtime     int64
}

func keyOf(path string) (statKey, bool) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return statKey{}, false
	}
	return statKey{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano()}, true
}

// Expect is what the reader must show after a change: paths with their new sizes,
// paths that must be gone, and the reader's old versions that must have been replaced.
type Expect struct {
	Sizes   map[string]int64
	Gone    []string
	oldKeys map[string]map[string]statKey // reader → path → version before the change
}

// snapshot records the readers' current versions of the expected paths (before the change).
func (e *Expect) snapshot(readers []string) {
	e.oldKeys = map[string]map[string]statKey{}
	for _, r := range readers {
		keys := map[string]statKey{}
		for p := range e.Sizes {
			if k, ok := keyOf(filepath.Join(r, p)); ok {
				keys[p] = k
			}
		}
		e.oldKeys[r] = keys
	}
}

// met checks the reader's stat data: every expected path at its size and a new version,
// every gone path absent. It does not read content; verification does.
func (e *Expect) met(reader string) bool {
	for p, size := range e.Sizes {
		k, ok := keyOf(filepath.Join(reader, p))
		if !ok || k.size != size {
			return false
		}
		if old, had := e.oldKeys[reader][p]; had && old == k {
			return false
		}
	}
	for _, p := range e.Gone {
		if _, ok := keyOf(filepath.Join(reader, p)); ok {
			return false
		}
	}
	return true
}

// errTimeout marks a workload that did not converge in time.
var errTimeout = errors.New("no convergence")

// waitMet polls e on every reader until met; alive reports a dead system early.
func waitMet(e *Expect, readers []string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	interval := 2 * time.Millisecond
	for {
		start := time.Now()
		all := true
		for _, r := range readers {
			if !e.met(r) {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		if err := alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", errTimeout, timeout)
		}
		// Poll at least every 2 ms for latency, but never spend more than a third of the
		// time walking big trees (the walk competes with the systems for CPU).
		time.Sleep(max(interval, 2*time.Since(start)))
	}
}

// verify compares the writer's manifest with every reader's.
func verify(writer string, readers []string) error {
	want, err := ReadManifest(writer)
	if err != nil {
		return err
	}
	for _, r := range readers {
		got, err := ReadManifest(r)
		if err != nil {
			return err
		}
		if d := want.Diff(got); d != "" {
			return fmt.Errorf("content of %q differs from the writer's: %s", r, d)
		}
	}
	return nil
}
