package state

import (
	"fmt"
	"strings"

	"github.com/syncedfolder/synced-folder/internal/multirow"
)

// Rows of the synced, remote and local tables are written in multi-row statements:
// the Put methods queue a row, and the transaction writes the queue as
// INSERT OR IGNORE statements of up to 256 rows before any other statement and before
// it commits. One statement per row cost 4.5 µs a row in the Go driver and the
// database/sql layer, one of 64 rows 3 µs: the first sync of 10,000 small files writes
// 30,000 rows in each agent. A row that was there already (the statement wrote fewer
// rows than it had) goes again on its own, through its put's single-row path, which
// replaces it; so does every other row of its statement, which then replaces itself
// with the same values.

// The tables whose rows are queued.
const (
	syncedQueue = iota
	remoteQueue
	localQueue
	queueCount
)

// queueTables are the queued tables with their columns ("synced (path, …)").
var queueTables = [queueCount]string{syncedInto, remoteInto, localInto}

// queueInserts holds each queued table's statement for each of multirow.Sizes:
// "INSERT OR IGNORE INTO table (…) VALUES (?, …), …".
var queueInserts = func() (q [queueCount][len(multirow.Sizes)]string) {
	for which, into := range queueTables {
		cols := strings.Count(into, ",") + 1
		for k, n := range multirow.Sizes {
			q[which][k] = "INSERT OR IGNORE INTO " + into + " VALUES " + multirow.Values(cols, n)
		}
	}
	return q
}()

// queuedRows is one table's rows waiting for a multi-row INSERT OR IGNORE.
type queuedRows struct {
	args []any // the rows' values, one row after the other
	// again writes row i on its own, replacing what is there.
	again []func(t *Tx) error
	// paths name the rows, for errors.
	paths []string
}

// queueRow queues a row of the table which (one of the queue constants); again writes
// it on its own. The queues are written before t's next other statement, or once one
// holds multirow.Sizes[0] rows.
func (t *stmtTx) queueRow(which int, path string, again func(t *Tx) error, args ...any) error {
	q := &t.queued[which]
	q.args = append(q.args, args...)
	q.again = append(q.again, again)
	q.paths = append(q.paths, path)
	if len(q.paths) >= multirow.Sizes[0] {
		return t.writeQueued()
	}
	return nil
}

// writeQueued writes every queued row. The rows that go again on their own write
// through Exec, which must not write the queues again meanwhile (t.writing).
func (t *stmtTx) writeQueued() error {
	if t.writing {
		return nil
	}
	t.writing = true
	defer func() { t.writing = false }()
	for which := range t.queued {
		if err := t.writeQueue(which); err != nil {
			return err
		}
	}
	return nil
}

// writeQueue writes the rows of queue which in chunks of multirow.Sizes; a chunk that
// added fewer rows than it had goes again row by row.
func (t *stmtTx) writeQueue(which int) error {
	q := &t.queued[which]
	if len(q.paths) == 0 {
		return nil
	}
	cols := len(q.args) / len(q.paths)
	for done := 0; done < len(q.paths); {
		k := multirow.Next(len(q.paths) - done)
		n := multirow.Sizes[k]
		res, err := t.exec(queueInserts[which][k], q.args[done*cols:(done+n)*cols]...)
		if err == nil {
			var added int64
			if added, err = res.RowsAffected(); err == nil && int(added) < n {
				tx := &Tx{tx: t}
				for _, again := range q.again[done : done+n] {
					if err := again(tx); err != nil {
						return err
					}
				}
			}
		}
		if err != nil {
			return fmt.Errorf("write %d rows into %s from %q: %w", n, queueTables[which], q.paths[done], err)
		}
		done += n
	}
	clear(q.args)
	clear(q.again)
	q.args, q.again, q.paths = q.args[:0], q.again[:0], q.paths[:0]
	return nil
}
