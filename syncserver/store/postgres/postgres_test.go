package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func TestMain(m *testing.M) { testpg.Main(m) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openURL opens the store at url and closes it when t ends.
func openURL(t testing.TB, url string, opts ...Option) *Store {
	t.Helper()
	quiet := WithLogger(slog.New(slog.DiscardHandler))
	st, err := Open(testCtx(t), url, append([]Option{WithConnectTimeout(20 * time.Second), quiet}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func sum(content string) string {
	s := sha256.Sum256([]byte(content))
	return hex.EncodeToString(s[:])
}

func fileEntry(path, content string) proto.Entry {
	return proto.Entry{
		Path: path, Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644,
		MTimeNs: 1_700_000_000_000_000_001, SHA256: sum(content),
		Blocks: []proto.Block{{Hash: sum(content), Size: int64(len(content))}},
	}
}

func mustApply(t testing.TB, st store.Store, agent string, changes ...store.Change) []store.Result {
	t.Helper()
	res, err := st.Apply(testCtx(t), agent, changes)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func queryInt(t testing.TB, url, sql string, args ...any) int64 {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	url := testpg.URL(t)
	const servers = 3
	stores := make([]*Store, servers)
	errs := make([]error, servers)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			stores[i], errs[i] = Open(testCtx(t), url, WithConnectTimeout(20*time.Second))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	for i := 1; i < servers; i++ {
		if stores[i].FolderID() != stores[0].FolderID() {
			t.Fatalf("FolderID %q and %q: concurrent Opens made two folders", stores[0].FolderID(), stores[i].FolderID())
		}
	}
	files, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	countRows := func() int64 {
		return queryInt(t, url, "SELECT count(*) FROM schema_migrations WHERE version_id > 0")
	}
	if n := countRows(); n != int64(len(files)) {
		t.Fatalf("schema_migrations has %d applied rows, want one per migration (%d)", n, len(files))
	}
	if n := queryInt(t, url, "SELECT count(*) FROM folder"); n != 1 {
		t.Fatalf("folder has %d rows, want 1", n)
	}
	mustApply(t, stores[0], "a", store.Change{Entry: fileEntry("kept", "x")})

	again := openURL(t, url)
	if again.FolderID() != stores[0].FolderID() {
		t.Errorf("reopen changed FolderID from %q to %q", stores[0].FolderID(), again.FolderID())
	}
	if n := countRows(); n != int64(len(files)) {
		t.Errorf("after a third Open schema_migrations has %d applied rows, want %d", n, len(files))
	}
	if _, err := again.Get(testCtx(t), "kept"); err != nil {
		t.Errorf("data written before reopening: %v", err)
	}
}

func TestMigrationsWaitForTheLockHolder(t *testing.T) {
	url := testpg.URL(t)
	ctx := testCtx(t)
	// Hold the migration lock as another server would while migrating.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockID); err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := Open(ctx, url)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		if r.st != nil {
			r.st.Close()
		}
		t.Fatalf("Open returned while another session held the migration lock: %v", r.err)
	case <-time.After(1500 * time.Millisecond):
	}
	if n := queryInt(t, url, "SELECT count(*) FROM pg_tables WHERE tablename = 'versions'"); n != 0 {
		t.Fatal("the schema was created while another session held the migration lock")
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrationLockID); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Open after the lock was released: %v", r.err)
	}
	defer r.st.Close()
	if _, err := r.st.Stats(ctx); err != nil {
		t.Fatalf("Stats after migrating: %v", err)
	}
}

func TestOpenRetriesUntilTheServerAppears(t *testing.T) {
	srv := testpg.Start(t)
	url := testpg.NewDatabase(t, srv.URL())
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	t.Run("GivesUpAtTheDeadline", func(t *testing.T) {
		start := time.Now()
		_, err := Open(testCtx(t), url, WithConnectTimeout(700*time.Millisecond), WithRetryBackoff(50*time.Millisecond, 200*time.Millisecond))
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open of a stopped server: err = %v, want store.ErrUnavailable", err)
		}
		if el := time.Since(start); el < 400*time.Millisecond || el > 10*time.Second {
			t.Errorf("Open gave up after %s, want about the 700ms deadline", el)
		}
	})

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	done := make(chan error, 1)
	var st *Store
	go func() {
		var err error
		st, err = Open(testCtx(t), url, WithConnectTimeout(60*time.Second), WithRetryBackoff(50*time.Millisecond, 500*time.Millisecond), WithLogger(logger))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Open returned before the server started: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Open after the server started: %v", err)
	}
	defer st.Close()
	if n := strings.Count(logs.String(), "database not reachable, retrying"); n < 2 {
		t.Errorf("logged %d retries, want several:\n%s", n, logs.String())
	}
	mustApply(t, st, "a", store.Change{Entry: fileEntry("f", "x")})
}

func TestOpenFailsAtOnceOnAMissingDatabase(t *testing.T) {
	url := testpg.URL(t)
	bad := strings.Replace(url, "/t_", "/missing_t_", 1)
	start := time.Now()
	_, err := Open(testCtx(t), bad, WithConnectTimeout(30*time.Second))
	if err == nil {
		t.Fatal("Open of a missing database succeeded")
	}
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a missing database is not a transient outage: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Open retried a missing database for %s", time.Since(start))
	}
	if _, err := Open(testCtx(t), "postgres://user:s3cret@[::1"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open of a malformed URL: err = %v, want an error without the password", err)
	}
}

// TestSurvivesRestart stops PostgreSQL under a writer that commits big batches, checks
// that calls fail with ErrUnavailable while it is down, starts it again and checks that
// the same Store works again and that every batch is all or nothing.
func TestSurvivesRestart(t *testing.T) {
	srv := testpg.Start(t)
	url := testpg.NewDatabase(t, srv.URL())
	st := openURL(t, url)
	ctx := testCtx(t)

	const batchSize = 2000
	batch := func(n int) []store.Change {
		changes := make([]store.Change, batchSize)
		for i := range changes {
			changes[i] = store.Change{Entry: fileEntry(fmt.Sprintf("b%03d/f%04d", n, i), fmt.Sprintf("%d/%d", n, i))}
		}
		return changes
	}
	var (
		mu        sync.Mutex
		committed = map[int]bool{}
		failed    []error
	)
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := st.Apply(ctx, "writer", batch(n))
			mu.Lock()
			if err == nil {
				committed[n] = true
			} else {
				failed = append(failed, err)
			}
			mu.Unlock()
		}
	}()
	// Let some batches commit, then pull the plug in the middle of others.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(committed)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	if _, err := st.Get(ctx, "b000/f0000"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get while PostgreSQL is down: err = %v, want store.ErrUnavailable", err)
	}
	if err := st.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping while PostgreSQL is down: err = %v, want store.ErrUnavailable", err)
	}
	if _, err := st.Apply(ctx, "a", []store.Change{{Entry: fileEntry("while-down", "x")}}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Apply while PostgreSQL is down: err = %v, want store.ErrUnavailable", err)
	}
	time.Sleep(300 * time.Millisecond) // the writer keeps failing meanwhile
	close(stop)
	<-writerDone
	mu.Lock()
	for _, err := range failed {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("writer's Apply during the outage: err = %v, want store.ErrUnavailable", err)
		}
	}
	if len(failed) == 0 {
		t.Error("no Apply of the writer failed during the outage")
	}
	t.Logf("writer: %d batches committed before the outage, %d failed during it", len(committed), len(failed))
	mu.Unlock()

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Connections the pool holds are dead; the store must find new ones by itself.
	var err error
	for range 50 {
		if err = st.Ping(ctx); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	res, err := st.Apply(ctx, "a", []store.Change{{Entry: fileEntry("after-restart", "y")}})
	if err != nil {
		t.Fatalf("Apply after restart with the same Store: %v", err)
	}

	// Every batch is all or nothing, and the seqs, versions and audit rows agree.
	var total int64
	for n := 0; ; n++ {
		cnt := queryInt(t, url, "SELECT count(*) FROM entries WHERE path LIKE $1", fmt.Sprintf("b%03d/%%", n))
		if cnt == 0 {
			if committed[n] {
				t.Errorf("batch %d was reported committed but is not in the database", n)
			}
			if n > len(committed)+len(failed) {
				break
			}
			continue
		}
		if cnt != batchSize {
			t.Errorf("batch %d: %d of %d entries visible: a partial batch", n, cnt, batchSize)
		}
		total += cnt
	}
	if total < int64(len(committed))*batchSize {
		t.Errorf("%d entries of batches, want at least %d", total, len(committed)*batchSize)
	}
	if got := res[0].Entry.Seq; got != total+1 {
		t.Errorf("seq after restart = %d, want %d (contiguous after %d committed entries)", got, total+1, total)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM files_log"); n != total+1 {
		t.Errorf("files_log has %d rows, want %d", n, total+1)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM versions"); n != total+1 {
		t.Errorf("versions has %d rows, want %d", n, total+1)
	}
	if _, err := st.Get(ctx, "while-down"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the change refused while down: Get err = %v, want ErrNotFound", err)
	}
}

// TestFilesLogRows checks the files_log table itself, column by column, as SQL users of
// the original system read it.
func TestFilesLogRows(t *testing.T) {
	url := testpg.URL(t)
	st := openURL(t, url)
	ctx := testCtx(t)

	v1 := mustApply(t, st, "ns/pod-a/sa", store.Change{Entry: fileEntry("docs/a.txt", "one"), Action: proto.ActionUpload})[0].Entry
	v2 := mustApply(t, st, "ns/pod-b/sa", store.Change{Entry: fileEntry("docs/a.txt", "two!"), BaseSeq: v1.Seq, Action: proto.ActionUpload})[0].Entry
	// A stale base conflicts and writes no row.
	if r := mustApply(t, st, "ns/pod-c/sa", store.Change{Entry: fileEntry("docs/a.txt", "late"), BaseSeq: v1.Seq})[0]; !r.Conflict {
		t.Fatalf("stale base committed: %+v", r)
	}
	v3 := mustApply(t, st, "ns/pod-a/sa", store.Change{Entry: proto.Entry{Path: "docs/a.txt", Type: proto.TypeFile, Deleted: true}, BaseSeq: v2.Seq, Action: proto.ActionDelete})[0].Entry
	v4 := mustApply(t, st, "ns/pod-b/sa", store.Change{Entry: fileEntry("docs/a.txt", "one"), BaseSeq: v3.Seq, Action: proto.ActionRestore})[0].Entry
	v5 := mustApply(t, st, "ns/pod-b/sa", store.Change{Entry: proto.Entry{Path: "docs", Type: proto.TypeDir, Mode: 0o755}})[0].Entry

	type row struct {
		action, path string
		version      int64
		sha, prevSHA *string
		size         int64
		agent        string
		timestamp    time.Time
	}
	str := func(s string) *string { return &s }
	want := []row{
		{"upload", "docs/a.txt", v1.Seq, str(sum("one")), nil, 3, "ns/pod-a/sa", v1.ModifiedAt},
		{"upload", "docs/a.txt", v2.Seq, str(sum("two!")), str(sum("one")), 4, "ns/pod-b/sa", v2.ModifiedAt},
		{"delete", "docs/a.txt", v3.Seq, nil, str(sum("two!")), 0, "ns/pod-a/sa", v3.ModifiedAt},
		{"restore", "docs/a.txt", v4.Seq, str(sum("one")), nil, 3, "ns/pod-b/sa", v4.ModifiedAt},
		{"mkdir", "docs", v5.Seq, nil, nil, 0, "ns/pod-b/sa", v5.ModifiedAt},
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, action, path, version, sha, prev_sha, size, agent, "timestamp" FROM files_log ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	var lastID int64
	for rows.Next() {
		var r row
		var id int64
		if err := rows.Scan(&id, &r.action, &r.path, &r.version, &r.sha, &r.prevSHA, &r.size, &r.agent, &r.timestamp); err != nil {
			t.Fatal(err)
		}
		if id <= lastID {
			t.Errorf("id %d after %d: ids must increase", id, lastID)
		}
		lastID = id
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("files_log has %d rows, want %d: %+v", len(got), len(want), got)
	}
	deref := func(s *string) string {
		if s == nil {
			return "NULL"
		}
		return *s
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.action != w.action || g.path != w.path || g.version != w.version || deref(g.sha) != deref(w.sha) ||
			deref(g.prevSHA) != deref(w.prevSHA) || g.size != w.size || g.agent != w.agent || !g.timestamp.Equal(w.timestamp) {
			t.Errorf("files_log row %d:\n got %s %s v%d sha=%s prev=%s size=%d agent=%s at %s\nwant %s %s v%d sha=%s prev=%s size=%d agent=%s at %s",
				i, g.action, g.path, g.version, deref(g.sha), deref(g.prevSHA), g.size, g.agent, g.timestamp,
				w.action, w.path, w.version, deref(w.sha), deref(w.prevSHA), w.size, w.agent, w.timestamp)
		}
	}
}

func TestApplyRefusesBadInputAndChangesNothing(t *testing.T) {
	st := openURL(t, testpg.URL(t))
	ctx := testCtx(t)
	for _, bad := range []store.Change{
		{Entry: fileEntry("../escape", "x")},
		{Entry: fileEntry("/abs", "x")},
		{Entry: fileEntry("a/./b", "x")},
		{Entry: proto.Entry{Path: "weird", Type: "fifo"}},
		{Entry: fileEntry("neg", "x"), BaseSeq: -1},
	} {
		// The good change first: it must not be committed either.
		_, err := st.Apply(ctx, "a", []store.Change{{Entry: fileEntry("good", "x")}, bad})
		if err == nil {
			t.Errorf("Apply with %q (type %q, base %d) succeeded", bad.Entry.Path, bad.Entry.Type, bad.BaseSeq)
		}
		if errors.Is(err, store.ErrUnavailable) {
			t.Errorf("bad input reported as unavailability: %v", err)
		}
	}
	s, err := st.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Seq != 0 || s.Files != 0 {
		t.Errorf("after refused batches: seq %d, files %d; want nothing changed", s.Seq, s.Files)
	}
}

// syncBuffer is a bytes.Buffer for a logger written from another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
