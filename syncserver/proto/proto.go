// Package proto holds the wire types and rules of the sync protocol (/v1) shared by the
// sync server, its Go client, the agent and the operator. It imports nothing but the
// standard library so that every side can depend on it.
package proto

import (
	"fmt"
	"slices"
	"time"
)

// Routes of the /v1 protocol and of the original (compatibility) API. Every route is
// documented with an example in docs/protocol.md.
const (
	// RouteChanges is GET ?since=SEQ&wait=DURATION&limit=N → ChangesResponse.
	RouteChanges = "/v1/changes"
	// RouteBlocksMissing is POST MissingBlocksRequest → MissingBlocksResponse.
	RouteBlocksMissing = "/v1/blocks/missing"
	// RouteBlocks is the prefix of PUT and GET /v1/blocks/{hash}; a PUT body may be
	// zstd-compressed (Content-Encoding: zstd), a GET answer is when the client accepts it.
	RouteBlocks = "/v1/blocks/"
	// RouteStreams is the prefix of POST /v1/streams/{id}/blocks: StreamBlocksRequest →
	// StreamBlocksResponse (stored blocks that continue an upload stream), and of POST
	// /v1/streams/{id}/sum (StreamSumSuffix) and /v1/streams/{id}/open (StreamOpenSuffix).
	RouteStreams = "/v1/streams/"
	// StreamBlocksSuffix follows the stream's name in RouteStreams.
	StreamBlocksSuffix = "/blocks"
	// StreamSumSuffix follows the stream's name in RouteStreams for POST
	// /v1/streams/{id}/sum: StreamSumRequest → StreamSumResponse (the SHA-256 of the
	// stream's content, computed by the server). Optional: older servers answer 404 or
	// 405.
	StreamSumSuffix = "/sum"
	// StreamOpenSuffix follows the stream's name in RouteStreams for POST
	// /v1/streams/{id}/open: StreamOpenRequest → StreamOpenResponse (the writer names
	// the file the stream uploads, so that readers may fetch its blocks before the
	// commit). Optional: older servers answer 404 or 405.
	StreamOpenSuffix = "/open"
	// RouteUploads is GET ?after=NO&wait=DURATION → UploadsResponse: the uploads in
	// progress (streams opened with StreamOpenSuffix). Optional: older servers answer
	// 404.
	RouteUploads = "/v1/uploads"
	// RouteUploadBlocks is the prefix of GET /v1/uploads/{no}?from=K&wait=DURATION&limit=N
	// → UploadBlocksResponse: the blocks an upload in progress has stored so far.
	RouteUploadBlocks = "/v1/uploads/"
	// RouteBlocksGet is POST GetBlocksRequest → the blocks' bytes in one answer, framed as
	// records (see BlockRecord). Optional: older servers answer 404 or 405.
	RouteBlocksGet = "/v1/blocks/get"
	// RouteCommit is POST CommitRequest → CommitResponse.
	RouteCommit = "/v1/commit"
	// RouteDelete is POST DeleteRequest → CommitResponse.
	RouteDelete = "/v1/delete"
	// RouteEntry is GET ?path=P → Entry (the current entry, tombstones included).
	RouteEntry = "/v1/entry"
	// RouteFile is GET ?path=P[&seq=N] → the file's bytes (current or a retained version).
	RouteFile = "/v1/file"
	// RouteVersions is GET ?path=P → VersionsResponse.
	RouteVersions = "/v1/versions"
	// RouteRestore is POST RestoreRequest → CommitResponse.
	RouteRestore = "/v1/restore"
	// RouteConflicts is GET → ConflictsResponse.
	RouteConflicts = "/v1/conflicts"
	// RouteAudit is GET ?path=P&agent=A&before=ID&limit=N → AuditResponse.
	RouteAudit = "/v1/audit"
	// RouteStats is GET → Stats.
	RouteStats = "/v1/stats"

	// RouteHealthz, RouteReadyz and RouteMetrics serve probes and Prometheus.
	RouteHealthz = "/healthz"
	RouteReadyz  = "/readyz"
	RouteMetrics = "/metrics"

	// The original system's API, kept as a compatibility surface on the same store.
	RouteLegacyIndex    = "/index"
	RouteLegacyDownload = "/download"
	RouteLegacyUpload   = "/upload"
	RouteLegacyDelete   = "/delete"
	RouteLegacyLogs     = "/logs"
)

// EntryType is the kind of a folder entry.
type EntryType string

// Entry types.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
)

// Block is one content-defined chunk of a file, addressed by the SHA-256 of its bytes.
type Block struct {
	// Hash is the lowercase hex SHA-256 of the block's bytes.
	Hash string `json:"hash"`
	// Size is the block's length in bytes.
	Size int64 `json:"size"`
}

// Entry is one version of one path of a folder. The server's current entry for a path is
// its latest version; a deleted path keeps a tombstone (Deleted) so that agents hear of it.
type Entry struct {
	// Path is the normalized relative path (see CleanPath).
	Path string `json:"path"`
	// Type is file, dir or symlink.
	Type EntryType `json:"type"`
	// Size is the file's length in bytes (0 for dirs and symlinks).
	Size int64 `json:"size"`
	// Mode holds the permission bits (0o7777 at most).
	Mode uint32 `json:"mode"`
	// MTimeNs is the modification time in Unix nanoseconds.
	MTimeNs int64 `json:"mtimeNs"`
	// SHA256 is the lowercase hex SHA-256 of the whole content of a file.
	SHA256 string `json:"sha256,omitempty"`
	// Blocks lists the file's content blocks in order; their sizes add up to Size.
	Blocks []Block `json:"blocks,omitempty"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
	// Seq is the folder-wide change counter value of this version.
	Seq int64 `json:"seq"`
	// Deleted marks a tombstone.
	Deleted bool `json:"deleted,omitempty"`
	// ModifiedBy is the identity of the agent that made this version.
	ModifiedBy string `json:"modifiedBy,omitempty"`
	// ModifiedAt is when the server committed this version.
	ModifiedAt time.Time `json:"modifiedAt"`
	// BlocksOmitted says Blocks was left out of this answer to save bytes (the client
	// asked for it with maxBlocks or omitBlocks); GET RouteEntry gives the list.
	BlocksOmitted bool `json:"blocksOmitted,omitempty"`
	// BlocksDelta, in a GET RouteEntry answer to a request with baseSeq, replaces Blocks:
	// the list written as a change of the base version's list.
	BlocksDelta *BlocksDelta `json:"blocksDelta,omitempty"`
}

// BlocksDelta writes a block list as a change of the list of a base version of the same
// path: base[:Head] + Blocks + base[len(base)-Tail:]. An edit of a large file changes a
// few blocks, so the delta is a few entries where the whole list is thousands.
type BlocksDelta struct {
	// BaseSeq is the base version (a retained version of the same path).
	BaseSeq int64 `json:"baseSeq"`
	// Head is how many blocks are kept from the start of the base list.
	Head int `json:"head"`
	// Tail is how many blocks are kept from the end of the base list.
	Tail int `json:"tail"`
	// Blocks are the blocks between the kept head and tail.
	Blocks []Block `json:"blocks,omitempty"`
}

// Apply returns the list d describes, given the base version's list, or an error when
// Head and Tail do not fit the base.
func (d BlocksDelta) Apply(base []Block) ([]Block, error) {
	if d.Head < 0 || d.Tail < 0 || d.Head > len(base) || d.Tail > len(base)-d.Head {
		return nil, fmt.Errorf("head %d and tail %d do not fit a base list of %d blocks", d.Head, d.Tail, len(base))
	}
	out := make([]Block, 0, d.Head+len(d.Blocks)+d.Tail)
	out = append(out, base[:d.Head]...)
	out = append(out, d.Blocks...)
	return append(out, base[len(base)-d.Tail:]...), nil
}

// DiffBlocks returns the delta that turns base into list: the longest common head and
// (of what remains) tail are kept, the rest is listed.
func DiffBlocks(baseSeq int64, base, list []Block) BlocksDelta {
	h := 0
	for h < len(base) && h < len(list) && base[h] == list[h] {
		h++
	}
	t := 0
	for t < len(base)-h && t < len(list)-h && base[len(base)-1-t] == list[len(list)-1-t] {
		t++
	}
	d := BlocksDelta{BaseSeq: baseSeq, Head: h, Tail: t}
	if mid := list[h : len(list)-t]; len(mid) > 0 {
		d.Blocks = append([]Block(nil), mid...)
	}
	return d
}

// ContentRef names the content of a retained file version: the version Seq of Path.
type ContentRef struct {
	Path string `json:"path"`
	Seq  int64  `json:"seq"`
}

// ChangesResponse answers RouteChanges: entries (tombstones included) whose Seq is greater
// than the request's since, in increasing Seq order.
type ChangesResponse struct {
	// FolderID identifies the folder's store; when it changes, a client's cursor is void
	// and it must start again from since=0.
	FolderID string `json:"folderId"`
	// Entries are the changed entries in increasing Seq order.
	Entries []Entry `json:"entries"`
	// LastSeq is the cursor for the next request: every change up to it has been sent.
	LastSeq int64 `json:"lastSeq"`
	// More is true when the limit cut the answer and the client should ask again at once.
	More bool `json:"more,omitempty"`
}

// MissingBlocksRequest asks which of Hashes the server does not store.
type MissingBlocksRequest struct {
	Hashes []string `json:"hashes"`
}

// MissingBlocksResponse lists the hashes of MissingBlocksRequest the server lacks.
type MissingBlocksResponse struct {
	Missing []string `json:"missing"`
}

// StreamBlocksRequest says that an upload stream's content continues at Off with
// Count blocks of a retained version's list, from its block From on: blocks the server
// holds, which it hashes into the stream from its store while the client is still
// reading the file, instead of at the commit. An edit of a large file names its
// unchanged stretches this way, a few bytes each.
type StreamBlocksRequest struct {
	// Off is where the first block goes in the stream's file (≥ 0).
	Off int64 `json:"off"`
	// Base is the retained file version whose list holds the blocks.
	Base ContentRef `json:"base"`
	// From is the index of the first block in Base's list (≥ 0).
	From int `json:"from"`
	// Count is how many blocks follow in Base's list (≥ 1).
	Count int `json:"count"`
}

// StreamSumRequest asks for the SHA-256 of an upload stream's content: the blocks the
// stream was sent (PUT /v1/blocks/{hash}?stream=) and named (StreamBlocksRequest), in
// file order. The server answers once it hashed them all, and only if they are exactly
// the list the client names: Blocks blocks, Size bytes in all, whose ListKey is List. A
// writer that sent every block of a large file to a stream can so leave the whole
// file's SHA-256 to the server, which hashes it while the writer still reads the file;
// the commit of the file then finds the stream hashed.
type StreamSumRequest struct {
	// Size is the content's length in bytes (≥ 1).
	Size int64 `json:"size"`
	// Blocks is how many blocks the content has (≥ 1).
	Blocks int `json:"blocks"`
	// List is the ListKey of the content's block list, in hex.
	List string `json:"list"`
}

// StreamSumResponse answers StreamSumRequest.
type StreamSumResponse struct {
	// SHA256 is the SHA-256 of the stored bytes of the stream's blocks, in order.
	SHA256 string `json:"sha256"`
}

// StreamBlocksResponse answers StreamBlocksRequest: the stream's content is known up to
// End bytes after Off.
type StreamBlocksResponse struct {
	// Off is the request's.
	Off int64 `json:"off"`
	// End is the offset just after the last block the request added.
	End int64 `json:"end"`
}

// StreamOpenRequest names the file an upload stream uploads (StreamOpenSuffix): readers
// then see the upload (RouteUploads) and may fetch its blocks while they arrive, before
// the commit that makes the file an entry.
type StreamOpenRequest struct {
	// Path is the file's path (see CleanPath).
	Path string `json:"path"`
	// Size is the file's length in bytes (≥ 0).
	Size int64 `json:"size"`
}

// StreamOpenResponse answers StreamOpenRequest.
type StreamOpenResponse struct {
	// No is the upload's number: server-wide, from 1 up, never reused while the server
	// runs (a restart starts again at 1).
	No int64 `json:"no"`
}

// Upload is an upload in progress: a stream that was opened and not yet taken by a
// commit or given up.
type Upload struct {
	// No is the upload's number (StreamOpenResponse).
	No int64 `json:"no"`
	// Path and Size are what the writer named (StreamOpenRequest).
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// UploadsResponse answers RouteUploads: the uploads in progress whose number is above
// the request's after, in increasing number order.
type UploadsResponse struct {
	Uploads []Upload `json:"uploads"`
	// Last is the highest upload number given so far: the after of the next request.
	// A Last below the after sent says the server restarted (numbers start at 1 again).
	Last int64 `json:"last"`
}

// UploadBlocksResponse answers RouteUploadBlocks: the blocks of an upload that are
// stored and contiguous from the start of its file, in file order, from index From on.
type UploadBlocksResponse struct {
	// From is the request's: the index of Blocks[0] in the file's block list.
	From int `json:"from"`
	// Blocks are the stored blocks from From on, at most the request's limit; nil when
	// they come as Runs.
	Blocks []Block `json:"blocks,omitempty"`
	// Runs are the same blocks when the request named, as base, the version of the
	// upload's path whose blocks the writer named by reference (an edit): stretches of
	// that version's list stand for its blocks (see Expand). Base is then that version.
	Runs []UploadRun `json:"runs,omitempty"`
	Base int64       `json:"base,omitempty"`
	// Done says no block will be added any more (the upload was taken by its commit,
	// given up or dropped) and Blocks reaches the last of those the upload holds.
	Done bool `json:"done"`
}

// UploadRun is a stretch of an upload's blocks (UploadBlocksResponse.Runs): Blocks, or,
// when Count is above 0, Count blocks of the base version's list from its block
// BaseFrom on.
type UploadRun struct {
	Blocks   []Block `json:"blocks,omitempty"`
	BaseFrom int     `json:"baseFrom,omitempty"`
	Count    int     `json:"count,omitempty"`
}

// Expand returns the answer's blocks, in order, taking the runs' stretches from base,
// the list of the version Base: an error when a stretch is not within base, or a run
// is neither blocks nor a stretch.
func (r *UploadBlocksResponse) Expand(base []Block) ([]Block, error) {
	if r.Runs == nil {
		return r.Blocks, nil
	}
	var out []Block
	for _, run := range r.Runs {
		switch {
		case run.Count > 0 && len(run.Blocks) == 0 && run.BaseFrom >= 0 && run.BaseFrom <= len(base)-run.Count:
			out = append(out, base[run.BaseFrom:run.BaseFrom+run.Count]...)
		case run.Count == 0 && len(run.Blocks) > 0:
			out = append(out, run.Blocks...)
		default:
			return nil, fmt.Errorf("upload blocks: run of %d blocks, %d from %d of a base of %d: not blocks nor a stretch of the base",
				len(run.Blocks), run.Count, run.BaseFrom, len(base))
		}
	}
	return out, nil
}

// GetBlocksRequest asks for the bytes of Hashes in one answer (RouteBlocksGet).
type GetBlocksRequest struct {
	Hashes []string `json:"hashes"`
}

// CommitItem is one change of a CommitRequest: a new version of a file, dir or symlink.
// It is checked on its own against BaseSeq: 0 means "the path has no live entry", any
// other value must equal the path's current Seq (a tombstone's Seq included).
type CommitItem struct {
	Path    string    `json:"path"`
	BaseSeq int64     `json:"baseSeq"`
	Type    EntryType `json:"type"`
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"`
	MTimeNs int64     `json:"mtimeNs"`
	SHA256  string    `json:"sha256,omitempty"`
	Blocks  []Block   `json:"blocks,omitempty"`
	Target  string    `json:"target,omitempty"`
	// Data optionally inlines a small file's whole content (base64 in JSON), sparing the
	// block upload round trips; the server stores it as the listed Blocks, or as one
	// block when none are listed.
	Data []byte `json:"data,omitempty"`
	// CopyFrom, instead of Blocks or Data, says the file has the content of a retained
	// version the server holds (a rename or a copy): the server takes that version's
	// block list. Size and SHA256 must be the version's.
	CopyFrom *ContentRef `json:"copyFrom,omitempty"`
	// BlocksDelta, instead of Blocks, writes the block list as a change of a retained
	// version of the same path (usually BaseSeq's).
	BlocksDelta *BlocksDelta `json:"blocksDelta,omitempty"`
	// Stream optionally names the upload stream the file's blocks were sent with
	// (PUT /v1/blocks/{hash}?stream=&off=): the server hashed them in file order as they
	// arrived and hashes only the rest of the list at commit. Servers that do not know
	// it ignore it.
	Stream string `json:"stream,omitempty"`
}

// CommitRequest is a batch of changes; each item succeeds or conflicts on its own.
type CommitRequest struct {
	Items []CommitItem `json:"items"`
	// OmitBlocks asks for the result entries without their block lists (the client
	// knows them); such entries say BlocksOmitted.
	OmitBlocks bool `json:"omitBlocks,omitempty"`
	// CompactResults asks for an ok result whose entry is the item's as sent
	// (CommitItem.Entry) as its Seq instead of the entry: the client knows the rest. A
	// server that predates the field answers with entries.
	CompactResults bool `json:"compactResults,omitempty"`
	// Deletes are applied in the same transaction as Items, each as a DeleteRequest's
	// item would be: a rename (an item copying a version, the delete of its path) then
	// reaches every reader's feed at once. Their results follow the items' in the
	// answer; a server that predates the field answers for the items only and deletes
	// nothing, so a client sends the deletes again on their own.
	Deletes []DeleteItem `json:"deletes,omitempty"`
}

// DeleteItem deletes Path when its current Seq equals BaseSeq.
type DeleteItem struct {
	Path    string `json:"path"`
	BaseSeq int64  `json:"baseSeq"`
}

// DeleteRequest is a batch of deletes; each item succeeds or conflicts on its own.
type DeleteRequest struct {
	Items []DeleteItem `json:"items"`
}

// Result statuses of one item of a batch.
const (
	StatusOK       = "ok"
	StatusConflict = "conflict"
	StatusError    = "error"
)

// ItemResult is the outcome of one item of a batch, in request order.
type ItemResult struct {
	Path string `json:"path"`
	// Status is ok, conflict or error.
	Status string `json:"status"`
	// Entry is the new entry on ok, the server's current entry on conflict (absent when
	// the path has none).
	Entry *Entry `json:"entry,omitempty"`
	// Seq stands for Entry on ok in the answer to a commit that asked for
	// compactResults, when the new entry is the item's: CommitItem.Entry at Seq, by the
	// answer's ModifiedBy at its ModifiedAt.
	Seq int64 `json:"seq,omitempty"`
	// Error says why an item failed.
	Error string `json:"error,omitempty"`
}

// CommitResponse answers RouteCommit, RouteDelete and RouteRestore.
type CommitResponse struct {
	Results []ItemResult `json:"results"`
	// ModifiedBy is the agent of the entries that compact results stand for
	// (ItemResult.Seq).
	ModifiedBy string `json:"modifiedBy,omitempty"`
	// ModifiedAt is when the server committed the entries that compact results stand
	// for.
	ModifiedAt time.Time `json:"modifiedAt,omitzero"`
}

// Entry is the entry that item makes once committed as version seq by agent at time
// at, unless the server takes its content from elsewhere (CopyFrom, BlocksDelta): what
// a compact result (ItemResult.Seq) stands for.
func (it CommitItem) Entry(seq int64, agent string, at time.Time) Entry {
	return Entry{Path: it.Path, Type: it.Type, Size: it.Size, Mode: it.Mode, MTimeNs: it.MTimeNs, SHA256: it.SHA256,
		Blocks: it.storedBlocks(), Target: it.Target, Seq: seq, ModifiedBy: agent, ModifiedAt: at}
}

// storedBlocks is the block list the server stores for it: the listed one, or one block
// for inlined content without a list (see Data).
func (it CommitItem) storedBlocks() []Block {
	if len(it.Blocks) == 0 && it.Data != nil && it.Size > 0 {
		return []Block{{Hash: it.SHA256, Size: it.Size}}
	}
	return it.Blocks
}

// WithoutData returns it without its inlined content, and with the block list the
// content stands for when it lists none: what Entry needs of a sent item.
func (it CommitItem) WithoutData() CommitItem {
	it.Blocks, it.Data = it.storedBlocks(), nil
	return it
}

// SameEntry reports whether a and b say the same: equal fields, block lists with the
// same blocks (an empty list is no list, as on the wire) and the same instant.
func SameEntry(a, b Entry) bool {
	return a.Path == b.Path && a.Type == b.Type && a.Size == b.Size && a.Mode == b.Mode && a.MTimeNs == b.MTimeNs &&
		a.SHA256 == b.SHA256 && slices.Equal(a.Blocks, b.Blocks) && a.Target == b.Target && a.Seq == b.Seq &&
		a.Deleted == b.Deleted && a.ModifiedBy == b.ModifiedBy && a.ModifiedAt.Equal(b.ModifiedAt) &&
		a.BlocksOmitted == b.BlocksOmitted && sameDelta(a.BlocksDelta, b.BlocksDelta)
}

func sameDelta(a, b *BlocksDelta) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.BaseSeq == b.BaseSeq && a.Head == b.Head && a.Tail == b.Tail && slices.Equal(a.Blocks, b.Blocks)
}

// OmitBlocks returns e without its block list (flagged BlocksOmitted) when the list has
// more than max blocks; max < 0 keeps every list.
func OmitBlocks(e Entry, max int) Entry {
	if max >= 0 && len(e.Blocks) > max {
		e.Blocks, e.BlocksOmitted = nil, true
	}
	return e
}

// VersionsResponse lists the retained versions of a path, newest first.
type VersionsResponse struct {
	Path     string  `json:"path"`
	Versions []Entry `json:"versions"`
}

// RestoreRequest makes the retained version Seq of Path current again, as a new change
// checked against BaseSeq like a commit.
type RestoreRequest struct {
	Path    string `json:"path"`
	Seq     int64  `json:"seq"`
	BaseSeq int64  `json:"baseSeq"`
}

// ConflictsResponse lists the live conflict copies of the folder.
type ConflictsResponse struct {
	Conflicts []Entry `json:"conflicts"`
}

// Audit actions.
const (
	ActionUpload   = "upload"
	ActionMkdir    = "mkdir"
	ActionSymlink  = "symlink"
	ActionDelete   = "delete"
	ActionRestore  = "restore"
	ActionConflict = "conflict"
)

// AuditRecord is one row of the audit log (the original system's files_log, made exact).
type AuditRecord struct {
	ID        int64     `json:"id"`
	Action    string    `json:"action"`
	Path      string    `json:"path"`
	Seq       int64     `json:"seq"`
	SHA256    string    `json:"sha256,omitempty"`
	PrevSHA   string    `json:"prevSha256,omitempty"`
	Size      int64     `json:"size"`
	Agent     string    `json:"agent"`
	Timestamp time.Time `json:"timestamp"`
}

// AuditResponse answers RouteAudit, newest first.
type AuditResponse struct {
	Records []AuditRecord `json:"records"`
}

// Stats answers RouteStats: live figures of the folder.
type Stats struct {
	FolderID        string    `json:"folderId"`
	Files           int64     `json:"files"`
	Dirs            int64     `json:"dirs"`
	Symlinks        int64     `json:"symlinks"`
	Bytes           int64     `json:"bytes"`
	Blocks          int64     `json:"blocks"`
	BlockBytes      int64     `json:"blockBytes"`
	Seq             int64     `json:"seq"`
	Conflicts       int64     `json:"conflicts"`
	AgentsConnected int64     `json:"agentsConnected"`
	LastChange      time.Time `json:"lastChange,omitempty"`
}

// Error is the JSON body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
	// Entry is the current entry, on a 409 of a single-item call.
	Entry *Entry `json:"entry,omitempty"`
}
