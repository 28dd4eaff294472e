// Package store declares the sync server's metadata and audit store: the versioned entries
// of one folder, their history and the audit log. Implementations live in sub-packages
// (sqlite: embedded, postgres: PostgreSQL) and all pass the suite in storetest.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// ErrNotFound is returned when a path or version does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps errors that mean the database cannot be reached right now; the
// server answers them with 503 and the caller may retry.
var ErrUnavailable = errors.New("store unavailable")

// Change is one item of a batch given to Store.Apply.
type Change struct {
	// Entry is the new version: Path, Type, Size, Mode, MTimeNs, SHA256, Blocks, Target
	// and Deleted are taken from it; Seq, ModifiedBy and ModifiedAt are set by the store.
	Entry proto.Entry
	// BaseSeq is the Seq the change was based on: 0 means "no live entry at Path" (absent
	// or a tombstone), otherwise it must equal the current entry's Seq.
	BaseSeq int64
	// Action is recorded in the audit log (proto.Action*).
	Action string
}

// Result is the outcome of one Change, in the order of the batch.
type Result struct {
	// Entry is the committed version when Conflict is false, and the current entry (zero
	// value when there is none) when Conflict is true.
	Entry proto.Entry
	// Conflict is true when BaseSeq did not match and nothing was changed for this item.
	Conflict bool
}

// AuditQuery filters Store.Audit. Zero fields do not filter.
type AuditQuery struct {
	Path  string
	Agent string
	// Before returns only records with an ID lower than it (paging, newest first).
	Before int64
	// Limit caps the answer; 0 means a default of 100.
	Limit int
}

// Retention says which superseded versions Store.Prune keeps. A path's current entry is
// never pruned. A superseded version is kept while it is among the Keep newest
// superseded versions of its path, or younger than MaxAge (when MaxAge > 0).
type Retention struct {
	Keep   int
	MaxAge time.Duration
}

// Stats are the store's live figures.
type Stats struct {
	Files      int64
	Dirs       int64
	Symlinks   int64
	Bytes      int64 // sum of the sizes of live files
	Seq        int64 // the highest committed Seq
	Conflicts  int64 // live entries whose path is a conflict copy
	LastChange time.Time
}

// Store is the metadata and audit store of one folder. Every method is safe for
// concurrent use.
type Store interface {
	// FolderID is a random identifier made when the store was first created; it changes
	// only when the store is replaced, which voids every client cursor.
	FolderID() string

	// Apply commits a batch in one transaction. Each change is checked against its
	// BaseSeq on its own: matching changes take the next Seq values in batch order and
	// each writes its audit row in the same transaction; conflicting ones change nothing.
	// Seq values become visible to Changes in order: a reader never sees Seq N+1 before
	// Seq N is committed. agent is recorded as ModifiedBy and in the audit rows.
	Apply(ctx context.Context, agent string, changes []Change) ([]Result, error)

	// Get returns the current entry of path (possibly a tombstone) or ErrNotFound.
	Get(ctx context.Context, path string) (proto.Entry, error)

	// Changes returns up to limit current entries (tombstones included) with Seq > since,
	// in increasing Seq order.
	Changes(ctx context.Context, since int64, limit int) ([]proto.Entry, error)

	// Live calls fn for every live (not deleted) current entry, in path order.
	Live(ctx context.Context, fn func(proto.Entry) error) error

	// Versions returns the retained versions of path (the current one included,
	// tombstones included), newest first; ErrNotFound when there are none.
	Versions(ctx context.Context, path string) ([]proto.Entry, error)

	// Version returns the retained version seq of path or ErrNotFound.
	Version(ctx context.Context, path string, seq int64) (proto.Entry, error)

	// Audit returns audit records matching q, newest first.
	Audit(ctx context.Context, q AuditQuery) ([]proto.AuditRecord, error)

	// Stats returns the folder's live figures.
	Stats(ctx context.Context) (Stats, error)

	// Prune removes superseded versions that r no longer keeps, as of now, and returns
	// how many it removed.
	Prune(ctx context.Context, r Retention, now time.Time) (int, error)

	// BlockRefs calls fn once for every block hash that a retained version refers to; the
	// block store's garbage collector keeps exactly these.
	BlockRefs(ctx context.Context, fn func(hash string) error) error

	// Ping reports whether the store can serve requests now (for /readyz).
	Ping(ctx context.Context) error

	// Close releases the store's resources.
	Close() error
}
