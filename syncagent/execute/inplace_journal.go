package execute

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/syncedfolder/synced-folder/internal/dirsync"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// writeJournal writes the journal of the patch h of the file f, whose ranges hold the
// blocks want (fetched as a download's, local ones from o.prev), then the bytes of f the
// patch overwrites or cuts off (h.oldSpans), and makes it durable. It returns the
// journal, open for reading, where the ranges' bytes start in it, and the blocks' fast
// sums.
func (x *Executor) writeJournal(ctx context.Context, h patchHeader, want []proto.Block, o *fetchOpts, f *os.File) (j *os.File, dataOff int64, fast []chunk.FastSum, err error) {
	if err := os.MkdirAll(x.JournalDir, 0o700); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(x.JournalDir, journalPrefix+hex.EncodeToString(rnd[:])+journalSuffix)
	j, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			j.Close()
			_ = os.Remove(name)
		}
	}()
	head, err := json.Marshal(h)
	if err != nil {
		return nil, 0, nil, err
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(j, sum), 1<<20)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(head)))
	_, _ = bw.WriteString(journalMagic)
	_, _ = bw.Write(n[:])
	_, _ = bw.Write(head)
	fast = make([]chunk.FastSum, 0, len(want))
	k := 0
	err = x.fetchBlocks(ctx, want, o, func(data []byte) error {
		if int64(len(data)) != want[k].Size {
			return fmt.Errorf("block %s: %d bytes, listed with %d", want[k].Hash, len(data), want[k].Size)
		}
		k++
		fast = append(fast, chunk.FastSumOf(data))
		_, err := bw.Write(data)
		return err
	})
	if err != nil {
		return nil, 0, nil, err
	}
	for _, r := range h.oldSpans() {
		if _, err := io.Copy(bw, io.NewSectionReader(f, r.Off, r.Len)); err != nil {
			return nil, 0, nil, fmt.Errorf("patch journal: read the bytes overwritten: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	if _, err := j.Write(sum.Sum(nil)); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	if err := j.Sync(); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	if err := dirsync.SyncPath(os.Open, x.JournalDir); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	ok = true
	return j, int64(len(journalMagic)) + 4 + int64(len(head)), fast, nil
}

// readJournal reads and checks the header of the journal j, and returns it with the
// offset of the ranges' bytes. complete is false when the journal is not whole (its
// sum is missing or wrong): it was being written when the agent stopped, so the file
// was never touched.
func readJournal(j *os.File) (h patchHeader, dataOff int64, complete bool, err error) {
	fi, err := j.Stat()
	if err != nil {
		return h, 0, false, err
	}
	size := fi.Size()
	pre := int64(len(journalMagic)) + 4
	if size < pre+sha256.Size {
		return h, 0, false, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(j, 0, size-sha256.Size)); err != nil {
		return h, 0, false, err
	}
	var got [sha256.Size]byte
	if _, err := j.ReadAt(got[:], size-sha256.Size); err != nil {
		return h, 0, false, err
	}
	if !bytes.Equal(sum.Sum(nil), got[:]) {
		return h, 0, false, nil
	}
	start := make([]byte, pre)
	if _, err := j.ReadAt(start, 0); err != nil {
		return h, 0, false, err
	}
	magic := string(start[:len(journalMagic)])
	if magic != journalMagic && magic != journalMagicV1 {
		return h, 0, true, fmt.Errorf("not a patch journal (magic %q)", magic)
	}
	n := int64(binary.BigEndian.Uint32(start[len(journalMagic):]))
	if pre+n > size-sha256.Size {
		return h, 0, true, fmt.Errorf("header of %d bytes past the journal's end", n)
	}
	head := make([]byte, n)
	if _, err := j.ReadAt(head, pre); err != nil {
		return h, 0, true, err
	}
	if err := json.Unmarshal(head, &h); err != nil {
		return h, 0, true, fmt.Errorf("header: %w", err)
	}
	h.v1 = magic == journalMagicV1
	dataOff = pre + n
	if err := h.validate(size - sha256.Size - dataOff); err != nil {
		return h, 0, true, err
	}
	return h, dataOff, true, nil
}

// validate checks a header read back against the data bytes its journal holds.
func (h patchHeader) validate(data int64) error {
	if h.Path == "" || !fs.ValidPath(h.Path) || h.Path == "." || strings.Contains(h.Path, "\\") {
		return fmt.Errorf("path %q is not a path in the folder", h.Path)
	}
	if h.Size < 0 || h.Mode&^0o777 != 0 || h.OldSize < 0 || h.OldMode&^0o777 != 0 {
		return fmt.Errorf("size %d (was %d), mode %o (was %o): out of range", h.Size, h.OldSize, h.Mode, h.OldMode)
	}
	var end, n int64
	for _, r := range h.Ranges {
		if r.Off < end || r.Len <= 0 || r.Len > h.Size || r.Off > h.Size-r.Len {
			return fmt.Errorf("range %d+%d: out of order or past the size %d", r.Off, r.Len, h.Size)
		}
		end = r.Off + r.Len
		n += r.Len
	}
	if !h.v1 {
		for _, b := range h.Blocks {
			if b.Size <= 0 {
				return fmt.Errorf("block %s of %d bytes", b.Hash, b.Size)
			}
		}
		if !covers(h.Blocks, h.Size) {
			return fmt.Errorf("blocks do not cover the size %d", h.Size)
		}
		n += rangesBytes(h.oldSpans())
	}
	if n != data {
		return fmt.Errorf("ranges of %d bytes, journal holds %d", n, data)
	}
	return nil
}

// removeJournal removes a patch's journal once its file is durable, and makes the
// removal durable: a journal found again would patch the file again, over what a
// program wrote to it since.
func removeJournal(name string) error {
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("remove patch journal: %w", err)
	}
	if err := dirsync.SyncPath(os.Open, filepath.Dir(name)); err != nil {
		return fmt.Errorf("remove patch journal: %w", err)
	}
	return nil
}
