package sqlite

import (
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

const hashLen = 32

// encodeBlocks packs a block list as 32 raw hash bytes plus a uvarint size per block:
// about 35 bytes a block instead of about 90 as JSON.
func encodeBlocks(blocks []proto.Block) ([]byte, error) {
	out := make([]byte, 0, len(blocks)*(hashLen+4))
	for i, b := range blocks {
		raw, err := decodeHash(b.Hash)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", i, err)
		}
		if b.Size < 0 {
			return nil, fmt.Errorf("block %d: negative size %d", i, b.Size)
		}
		out = append(out, raw[:]...)
		out = binary.AppendUvarint(out, uint64(b.Size))
	}
	return out, nil
}

// decodeBlocks reverses encodeBlocks.
func decodeBlocks(data []byte) ([]proto.Block, error) {
	if len(data) == 0 {
		return nil, nil
	}
	blocks := make([]proto.Block, 0, len(data)/(hashLen+3))
	for len(data) > 0 {
		if len(data) < hashLen+1 {
			return nil, fmt.Errorf("corrupt block list: %d trailing bytes", len(data))
		}
		hash := hex.EncodeToString(data[:hashLen])
		size, n := binary.Uvarint(data[hashLen:])
		if n <= 0 || size > math.MaxInt64 {
			return nil, fmt.Errorf("corrupt block list: bad size after block %d", len(blocks))
		}
		blocks = append(blocks, proto.Block{Hash: hash, Size: int64(size)})
		data = data[hashLen+n:]
	}
	return blocks, nil
}

// eachHash calls fn with the raw hash of every block of an encoded block list.
func eachHash(data []byte, fn func(h [hashLen]byte) error) error {
	for len(data) > 0 {
		if len(data) < hashLen+1 {
			return fmt.Errorf("corrupt block list: %d trailing bytes", len(data))
		}
		var h [hashLen]byte
		copy(h[:], data[:hashLen])
		_, n := binary.Uvarint(data[hashLen:])
		if n <= 0 {
			return fmt.Errorf("corrupt block list: bad size")
		}
		data = data[hashLen+n:]
		if err := fn(h); err != nil {
			return err
		}
	}
	return nil
}

// decodeHash parses a lowercase hex SHA-256; the store refuses anything else rather than
// keep a hash it could not give back unchanged.
func decodeHash(h string) ([hashLen]byte, error) {
	var raw [hashLen]byte
	if len(h) != 2*hashLen {
		return raw, fmt.Errorf("hash %q is not a hex SHA-256", h)
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return raw, fmt.Errorf("hash %q is not lowercase hex", h)
		}
	}
	if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
		return raw, fmt.Errorf("hash %q: %w", h, err)
	}
	return raw, nil
}

// entryCols are the columns scanEntry reads, from the versions table aliased v.
const entryCols = `v.path, v.type, v.size, v.mode, v.mtime_ns, v.sha256, v.blocks, v.target, v.seq, v.deleted, v.modified_by, v.modified_at`

type scanner interface{ Scan(dest ...any) error }

func scanEntry(row scanner) (proto.Entry, error) {
	var e proto.Entry
	var typ string
	var blocks []byte
	var modifiedAt int64
	if err := row.Scan(&e.Path, &typ, &e.Size, &e.Mode, &e.MTimeNs, &e.SHA256, &blocks, &e.Target, &e.Seq, &e.Deleted, &e.ModifiedBy, &modifiedAt); err != nil {
		return proto.Entry{}, err
	}
	e.Type = proto.EntryType(typ)
	e.ModifiedAt = fromNanos(modifiedAt)
	var err error
	if e.Blocks, err = decodeBlocks(blocks); err != nil {
		return proto.Entry{}, fmt.Errorf("version %d of %q: %w", e.Seq, e.Path, err)
	}
	return e, nil
}

// scanEntries reads every row of rows and closes it.
func scanEntries(rows *sql.Rows) ([]proto.Entry, error) {
	defer rows.Close()
	out := []proto.Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
