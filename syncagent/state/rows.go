package state

import (
	"fmt"
	"strings"
	"sync"
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

// queuedRows is one table's rows waiting for a multi-row INSERT OR IGNORE.
type queuedRows struct {
	// into is the table and its columns: "synced (path, …)".
	into string
	cols int
	args []any // cols values per row
	// again writes row i on its own, replacing what is there.
	again []func(t *Tx) error
	// paths name the rows, for errors.
	paths []string
}

// rowChunks are the row counts of the multi-row statements, largest first: a queue is
// written in chunks of these sizes, so that a few statement texts serve every length.
var rowChunks = [...]int{256, 64, 16, 4, 1}

// queueRow queues a row into which (one of the queue constants), a table and its
// columns; again writes it on its own. The queue is written before t's next other
// statement, or once it holds rowChunks[0] rows.
func (t *stmtTx) queueRow(which int, into string, path string, again func(t *Tx) error, args ...any) error {
	q := t.queued[which]
	if q == nil {
		q = &queuedRows{into: into, cols: len(args)}
		t.queued[which] = q
	}
	if len(args) != q.cols || into != q.into {
		return fmt.Errorf("queue a row of %d values into %s: the queue is of %d into %s", len(args), into, q.cols, q.into)
	}
	q.args = append(q.args, args...)
	q.again = append(q.again, again)
	q.paths = append(q.paths, path)
	if len(q.paths) >= rowChunks[0] {
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
	for _, q := range t.queued {
		if q == nil {
			continue
		}
		if err := t.writeQueue(q); err != nil {
			return err
		}
	}
	return nil
}

// writeQueue writes q's rows in chunks of rowChunks; a chunk that added fewer rows than
// it had goes again row by row.
func (t *stmtTx) writeQueue(q *queuedRows) error {
	for done := 0; done < len(q.paths); {
		k := 0
		for rowChunks[k] > len(q.paths)-done {
			k++
		}
		n := rowChunks[k]
		res, err := t.exec(multiRowInsert(q.into, q.cols, n), q.args[done*q.cols:(done+n)*q.cols]...)
		if err != nil {
			return fmt.Errorf("write %d rows into %s from %q: %w", n, q.into, q.paths[done], err)
		}
		added, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("write %d rows into %s from %q: %w", n, q.into, q.paths[done], err)
		}
		if int(added) < n {
			tx := &Tx{tx: t}
			for _, again := range q.again[done : done+n] {
				if err := again(tx); err != nil {
					return err
				}
			}
		}
		done += n
	}
	clear(q.args)
	clear(q.again)
	q.args, q.again, q.paths = q.args[:0], q.again[:0], q.paths[:0]
	return nil
}

// insertKey names a multi-row statement's text.
type insertKey struct {
	into string
	rows int
}

var (
	multiRowMu    sync.Mutex
	multiRowTexts = map[insertKey]string{}
)

// multiRowInsert returns "INSERT OR IGNORE INTO into VALUES (?, …), …" for rows rows of
// cols columns; the texts are made once (they key the prepared statements).
func multiRowInsert(into string, cols, rows int) string {
	key := insertKey{into, rows}
	multiRowMu.Lock()
	defer multiRowMu.Unlock()
	if q, ok := multiRowTexts[key]; ok {
		return q
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	q := "INSERT OR IGNORE INTO " + into + " VALUES " + strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
	multiRowTexts[key] = q
	return q
}
