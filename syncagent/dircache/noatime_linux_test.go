package dircache

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A file read through the cache keeps its access time: it is older than the file's
// mtime, which a relatime mount updates on the first read.
func TestReadsKeepTheAccessTime(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	c := New(root)
	defer c.Close()
	f, err := c.OpenFile("sub/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(data) != "content" {
		t.Fatalf("read %q, %v", data, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Atim.Sec, st.Atim.Nsec); !got.Equal(old) {
		t.Errorf("access time %v after a read, want %v kept", got, old)
	}
}

// otherOwnerEnv runs TestReadsOfAnotherOwnersFile as the helper that reads the file.
const otherOwnerEnv = "DIRCACHE_READ_AS_ANOTHER_USER"

// A file of another owner, which the kernel does not let the agent open with
// O_NOATIME (EPERM), is read all the same, and later opens no longer ask. /etc/passwd
// is root's: the test reads it as it runs, or, run as root (who may use the flag on
// any file), as a helper process run as nobody.
func TestReadsOfAnotherOwnersFile(t *testing.T) {
	if os.Getenv(otherOwnerEnv) != "" || os.Geteuid() != 0 {
		noAtimeRefused.Store(false)
		defer noAtimeRefused.Store(false)
		root, err := os.OpenRoot("/etc")
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		c := New(root)
		defer c.Close()
		for range 2 {
			f, err := c.OpenFile("passwd", os.O_RDONLY, 0)
			if err != nil {
				t.Fatalf("open another owner's file: %v", err)
			}
			f.Close()
		}
		if !noAtimeRefused.Load() {
			t.Error("the refusal was not remembered")
		}
		return
	}
	// As root: the same test in a copy of this binary that nobody may run, as nobody.
	dir, err := os.MkdirTemp("", "dircache-helper-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dircache.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestReadsOfAnotherOwnersFile$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), otherOwnerEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestReadsOfAnotherOwnersFile") {
		t.Fatalf("helper as nobody: %v\n%s", err, out)
	}
}
