package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/storetest"
)

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) store.Store {
			return openAt(t, filepath.Join(t.TempDir(), "meta.db"))
		},
		storetest.WithReopen(func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
			path := filepath.Join(t.TempDir(), "sub", "meta.db")
			return openAt(t, path), func(t *testing.T) store.Store { return openAt(t, path) }
		}),
	)
}

// BenchmarkApply4KiBBatch is the stores' shared workload (see storetest).
func BenchmarkApply4KiBBatch(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkApply4KiBBatch(b, s)
}

func TestOpenRefusesAFileThatIsNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	junk := bytes.Repeat([]byte("this is not a database\n"), 400)
	if err := os.WriteFile(path, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a file that is not a database")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a database") {
		t.Fatalf("error %q does not name the file and the problem", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, junk) {
		t.Fatal("Open changed a file it refused")
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s := openAt(t, path)
	// What a later release would leave behind after migrating further.
	if _, err := s.w.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path)
	if err == nil {
		s2.Close()
		t.Fatal("Open accepted a schema newer than it knows")
	}
	if !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Fatalf("error %q does not say the schema is newer", err)
	}
}

// crashChildEnv names the database a child process of TestCommittedBatchesSurviveSIGKILL
// writes to until it is killed.
const crashChildEnv = "SQLITE_STORE_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild commits batches forever and reports each committed last seq on stdout
// after Apply returns.
func crashChild(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	shared := int64(0)
	for i := 0; ; i++ {
		changes := []store.Change{{Entry: proto.Entry{Path: "shared", Type: proto.TypeFile, Size: int64(i)}, BaseSeq: shared}}
		for j := range 20 {
			sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", i, j))
			h := hex.EncodeToString(sum[:])
			changes = append(changes, store.Change{Entry: proto.Entry{
				Path: fmt.Sprintf("d%d/f%d", i, j), Type: proto.TypeFile, Size: 10, SHA256: h,
				Blocks: []proto.Block{{Hash: h, Size: 10}},
			}})
		}
		res, err := s.Apply(ctx, "child", changes)
		if err != nil || res[0].Conflict {
			fmt.Fprintln(os.Stderr, "apply:", err)
			os.Exit(2)
		}
		shared = res[0].Entry.Seq
		fmt.Printf("committed %d\n", res[len(res)-1].Entry.Seq)
	}
}

func TestCommittedBatchesSurviveSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	var acked int64
	for n := 0; n < 40 && lines.Scan(); n++ {
		if _, err := fmt.Sscanf(lines.Text(), "committed %d", &acked); err != nil {
			t.Fatalf("child said %q", lines.Text())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // it was killed: the error only says so
	if acked == 0 {
		t.Fatal("the child committed nothing")
	}

	s := openAt(t, path)
	defer s.Close()
	ctx := context.Background()
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq < acked {
		t.Fatalf("after the crash the store is at seq %d; the child had committed %d", st.Seq, acked)
	}
	if st.Seq%21 != 0 {
		t.Fatalf("seq %d is not a whole number of 21-item batches: a batch was half applied", st.Seq)
	}
	// Every change is there once, with its audit row.
	es, err := s.Changes(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := st.Seq - st.Seq/21 + 1; int64(len(es)) != want {
		t.Fatalf("%d current entries; want %d", len(es), want)
	}
	recs, err := s.Audit(ctx, store.AuditQuery{Limit: int(st.Seq) + 10})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(recs)) != st.Seq || recs[0].Seq != st.Seq || recs[len(recs)-1].Seq != 1 {
		t.Fatalf("%d audit rows for %d changes", len(recs), st.Seq)
	}
	if shared, err := s.Get(ctx, "shared"); err != nil || shared.Seq != st.Seq-20 {
		t.Fatalf("shared = %+v, %v; want seq %d", shared, err, st.Seq-20)
	}
	if st.Files != int64(len(es)) {
		t.Fatalf("Stats.Files = %d; want %d", st.Files, len(es))
	}
}
