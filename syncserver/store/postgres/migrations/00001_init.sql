-- +goose Up
-- One database holds one folder. Paths compare byte-wise (COLLATE "C") so that path order
-- is the same on every server whatever its default collation, and the same as the embedded
-- store's.

-- folder is a single row: the folder's identity, its change counter and the live figures
-- of Stats, kept up to date by every change so that Stats does not scan the folder. Every
-- writer locks this row first (see Apply), which is what keeps seq values visible in order.
CREATE TABLE folder (
    id        integer PRIMARY KEY CHECK (id = 1),
    folder_id text    NOT NULL,
    seq       bigint  NOT NULL CHECK (seq >= 0),
    files     bigint  NOT NULL DEFAULT 0,
    dirs      bigint  NOT NULL DEFAULT 0,
    symlinks  bigint  NOT NULL DEFAULT 0,
    bytes     bigint  NOT NULL DEFAULT 0,
    conflicts bigint  NOT NULL DEFAULT 0
);
INSERT INTO folder (id, folder_id, seq) VALUES (1, gen_random_uuid()::text, 0);

-- versions holds every retained version of every path, the current ones included.
CREATE TABLE versions (
    seq         bigint PRIMARY KEY,
    path        text COLLATE "C" NOT NULL,
    type        text NOT NULL,
    size        bigint NOT NULL,
    mode        bigint NOT NULL,
    mtime_ns    bigint NOT NULL,
    sha256      text NOT NULL DEFAULT '',
    -- [{"hash": hex, "size": n}, ...] in file order.
    blocks      jsonb NOT NULL DEFAULT '[]',
    target      text NOT NULL DEFAULT '',
    deleted     boolean NOT NULL,
    modified_by text NOT NULL,
    modified_at timestamptz NOT NULL
);
CREATE INDEX versions_path_seq ON versions (path, seq DESC);

-- entries points at the current version of each path (possibly a tombstone). There is no
-- foreign key to versions: its check per row cost a tenth of a batch commit, and the one
-- statement that deletes versions (Prune) excludes the current ones itself.
CREATE TABLE entries (
    path text COLLATE "C" PRIMARY KEY,
    seq  bigint NOT NULL UNIQUE
);

-- files_log is the audit log of the original system, made exact: one row per change,
-- written in the transaction of the change.
CREATE TABLE files_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action      text NOT NULL,
    path        text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    sha         text,
    prev_sha    text,
    size        bigint NOT NULL,
    agent       text NOT NULL,
    "timestamp" timestamptz NOT NULL
);
-- The history of one path is read by path; a query by agent walks the log newest first
-- and stops at its limit, which an index on agent would speed up less than it slowed
-- every commit.
CREATE INDEX files_log_path_id ON files_log (path, id DESC);

-- +goose Down
DROP TABLE files_log;
DROP TABLE entries;
DROP TABLE versions;
DROP TABLE folder;
