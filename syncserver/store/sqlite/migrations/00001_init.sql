-- +goose Up
-- The folder's identity: one row, made by the first Open.
CREATE TABLE folder (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    folder_id TEXT NOT NULL
);

-- Every retained version of every path; seq is the folder-wide change counter.
CREATE TABLE versions (
    seq         INTEGER PRIMARY KEY,
    path        TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    mode        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    blocks      BLOB    NOT NULL, -- 32-byte hash + uvarint size per block
    target      TEXT    NOT NULL,
    deleted     INTEGER NOT NULL,
    conflict    INTEGER NOT NULL, -- proto.IsConflictPath(path), for Stats
    modified_by TEXT    NOT NULL,
    modified_at INTEGER NOT NULL  -- Unix nanoseconds
);
CREATE INDEX versions_by_path ON versions (path, seq);

-- The current version of each path (tombstones included).
CREATE TABLE current (
    path TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL UNIQUE REFERENCES versions (seq)
) WITHOUT ROWID;

-- The audit log: one row per committed change, never pruned.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    action      TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    prev_sha256 TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    agent       TEXT    NOT NULL,
    ts          INTEGER NOT NULL -- Unix nanoseconds
);
CREATE INDEX audit_by_path ON audit (path, id);
CREATE INDEX audit_by_agent ON audit (agent, id);

-- +goose Down
DROP TABLE audit;
DROP TABLE current;
DROP TABLE versions;
DROP TABLE folder;
