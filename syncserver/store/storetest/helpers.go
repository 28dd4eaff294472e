package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// timeSlack is how far the store's clock may stand from the test's (PostgreSQL may stamp
// times itself) and how much precision a database may drop from a time.
const timeSlack = 2 * time.Second

func sha(content string) string {
	s := sha256.Sum256([]byte(content))
	return hex.EncodeToString(s[:])
}

// file is a file entry of content, split into blocks of at most 4 bytes so that
// different contents share some blocks.
func file(path, content string) proto.Entry {
	var blocks []proto.Block
	for i := 0; i < len(content); i += 4 {
		chunk := content[i:min(i+4, len(content))]
		blocks = append(blocks, proto.Block{Hash: sha(chunk), Size: int64(len(chunk))})
	}
	return proto.Entry{
		Path:    path,
		Type:    proto.TypeFile,
		Size:    int64(len(content)),
		Mode:    0o644,
		MTimeNs: time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC).UnixNano() + int64(len(content)),
		SHA256:  sha(content),
		Blocks:  blocks,
	}
}

func dir(path string) proto.Entry {
	return proto.Entry{Path: path, Type: proto.TypeDir, Mode: 0o755, MTimeNs: 1_700_000_000_123_456_789}
}

func symlink(path, target string) proto.Entry {
	return proto.Entry{Path: path, Type: proto.TypeSymlink, Mode: 0o777, MTimeNs: 1_700_000_001_000_000_001, Target: target}
}

func tombstone(path string) proto.Entry {
	return proto.Entry{Path: path, Type: proto.TypeFile, Deleted: true}
}

// upload is a Change that writes e on top of base.
func upload(e proto.Entry, base int64) store.Change {
	action := proto.ActionUpload
	switch e.Type {
	case proto.TypeDir:
		action = proto.ActionMkdir
	case proto.TypeSymlink:
		action = proto.ActionSymlink
	}
	if e.Deleted {
		action = proto.ActionDelete
	}
	return store.Change{Entry: e, BaseSeq: base, Action: action}
}

// apply applies changes and fails the test on an error or a wrong number of results.
func apply(t *testing.T, st store.Store, agent string, changes ...store.Change) []store.Result {
	t.Helper()
	res, err := st.Apply(ctxFor(t), agent, changes)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res) != len(changes) {
		t.Fatalf("Apply returned %d results for %d changes", len(res), len(changes))
	}
	return res
}

// commit applies one change that must succeed and returns the committed entry.
func commit(t *testing.T, st store.Store, agent string, c store.Change) proto.Entry {
	t.Helper()
	r := apply(t, st, agent, c)[0]
	if r.Conflict {
		t.Fatalf("Apply %s %q on base %d: unexpected conflict (current entry seq %d)", c.Action, c.Entry.Path, c.BaseSeq, r.Entry.Seq)
	}
	return r.Entry
}

func get(t *testing.T, st store.Store, path string) proto.Entry {
	t.Helper()
	e, err := st.Get(ctxFor(t), path)
	if err != nil {
		t.Fatalf("Get(%q): %v", path, err)
	}
	return e
}

func stats(t *testing.T, st store.Store) store.Stats {
	t.Helper()
	s, err := st.Stats(ctxFor(t))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func changes(t *testing.T, st store.Store, since int64, limit int) []proto.Entry {
	t.Helper()
	es, err := st.Changes(ctxFor(t), since, limit)
	if err != nil {
		t.Fatalf("Changes(%d, %d): %v", since, limit, err)
	}
	return es
}

func audit(t *testing.T, st store.Store, q store.AuditQuery) []proto.AuditRecord {
	t.Helper()
	recs, err := st.Audit(ctxFor(t), q)
	if err != nil {
		t.Fatalf("Audit(%+v): %v", q, err)
	}
	return recs
}

func versions(t *testing.T, st store.Store, path string) []proto.Entry {
	t.Helper()
	vs, err := st.Versions(ctxFor(t), path)
	if err != nil {
		t.Fatalf("Versions(%q): %v", path, err)
	}
	return vs
}

func live(t *testing.T, st store.Store) []proto.Entry {
	t.Helper()
	var out []proto.Entry
	if err := st.Live(ctxFor(t), func(e proto.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("Live: %v", err)
	}
	return out
}

func blockRefs(t *testing.T, st store.Store) map[string]int {
	t.Helper()
	refs := map[string]int{}
	if err := st.BlockRefs(ctxFor(t), func(h string) error { refs[h]++; return nil }); err != nil {
		t.Fatalf("BlockRefs: %v", err)
	}
	return refs
}

func seqsOf(es []proto.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -timeSlack && d < timeSlack
}

// diffEntry describes how got differs from want in the fields a caller gives the store
// (and in Seq, Deleted and ModifiedBy); "" when they match. ModifiedAt is compared
// within timeSlack.
func diffEntry(got, want proto.Entry) string {
	var d []string
	add := func(field string, g, w any) {
		d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w))
	}
	if got.Path != want.Path {
		add("Path", got.Path, want.Path)
	}
	if got.Type != want.Type && !want.Deleted {
		add("Type", got.Type, want.Type)
	}
	if got.Size != want.Size {
		add("Size", got.Size, want.Size)
	}
	if got.Mode != want.Mode {
		add("Mode", got.Mode, want.Mode)
	}
	if got.MTimeNs != want.MTimeNs {
		add("MTimeNs", got.MTimeNs, want.MTimeNs)
	}
	if got.SHA256 != want.SHA256 {
		add("SHA256", got.SHA256, want.SHA256)
	}
	if got.Target != want.Target {
		add("Target", got.Target, want.Target)
	}
	if got.Deleted != want.Deleted {
		add("Deleted", got.Deleted, want.Deleted)
	}
	if got.Seq != want.Seq {
		add("Seq", got.Seq, want.Seq)
	}
	if got.ModifiedBy != want.ModifiedBy {
		add("ModifiedBy", got.ModifiedBy, want.ModifiedBy)
	}
	if !want.ModifiedAt.IsZero() && !near(got.ModifiedAt, want.ModifiedAt) {
		add("ModifiedAt", got.ModifiedAt, want.ModifiedAt)
	}
	if len(got.Blocks) != len(want.Blocks) {
		add("len(Blocks)", len(got.Blocks), len(want.Blocks))
	} else {
		for i := range got.Blocks {
			if got.Blocks[i] != want.Blocks[i] {
				add(fmt.Sprintf("Blocks[%d]", i), got.Blocks[i], want.Blocks[i])
				break
			}
		}
	}
	return strings.Join(d, "; ")
}

// expectEntry fails the test when got differs from want (see diffEntry).
func expectEntry(t *testing.T, what string, got, want proto.Entry) {
	t.Helper()
	if d := diffEntry(got, want); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// withMeta returns e as the store should have committed it.
func withMeta(e proto.Entry, seq int64, agent string, at time.Time) proto.Entry {
	e.Seq = seq
	e.ModifiedBy = agent
	e.ModifiedAt = at
	return e
}

// cancelledCtx is a context that is already done.
func cancelledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
