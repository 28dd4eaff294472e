package blobs

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/syncedfolder/synced-folder/internal/directio"
)

// With WithDirectIO, large streamed blocks (at least directRecordMin bytes: the chunks
// of large files) are written to their pack and read back around the page cache where
// the system allows it. They must reach the disk before their commit anyway (Sync), and
// where copying a page into the cache is dear (a VM whose balloon takes freed pages
// back), or where the cache counts against a memory limit, skipping it saves the
// server's CPU and memory on large uploads. The price is a disk read for every download
// of such a block and every commit check that reads it, where the cache would have
// served them from memory: on the machines measured (docs/benchmarks.md) that made a
// 1-byte insertion at the start of a 1 GiB file 0.3–0.4 s slower, so it is off by
// default. Such a record starts at an offset aligned to directio.Align and is padded
// with zeros to the next one; scanPack skips that padding, so a store written with
// either setting opens with the other. Small blocks (PutMany, small streamed ones) are
// always written through the cache, where many of them share a page.
const directRecordMin = 64 << 10

// openDirect opens a second handle on a pack for direct I/O; nil when the system does
// not allow it, and the pack is then only read and written through the cache.
func openDirect(path string, flag int) *os.File {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil
	}
	if !directio.Enable(f) {
		f.Close()
		return nil
	}
	return f
}

// appendStreamedRecord appends one record of a streamed block of size bytes (built in
// rec, a recBufs buffer whose memory is aligned) to the active pack, unsynced: a large
// one with a direct write at the next aligned offset, the others, or all where the pack
// has no direct handle or the write is refused for its alignment, through the cache.
// The caller holds wmu.
func (s *Store) appendStreamedRecord(rec []byte, size int64) (*pack, int64, error) {
	p, err := s.activePack()
	if err != nil {
		return nil, 0, err
	}
	if p.direct == nil || size < directRecordMin {
		return s.appendRecords(rec, false)
	}
	off := directio.Up(p.size)
	padded := rec[:directio.Up(int64(len(rec)))]
	clear(padded[len(rec):])
	if _, err := p.direct.WriteAt(padded, off); err != nil {
		if directio.Refused(err) {
			s.pmu.Lock()
			p.closeDirect()
			s.pmu.Unlock()
			return s.appendRecords(rec, false)
		}
		s.active = nil
		return nil, 0, fmt.Errorf("append to pack %q: %w", p.path, err)
	}
	s.pmu.Lock()
	if p.recs != nil {
		p.recs = append(p.recs, packRecords(rec, off)...)
	}
	p.size = off + int64(len(padded))
	s.pmu.Unlock()
	return p, off, nil
}

// readRecord reads the record of loc into buf (a recBufs buffer) and returns it: with a
// direct read for a large record of a pack that has a direct handle, else through the
// cache. The caller holds pmu (read).
func readRecord(loc *packed, buf []byte) ([]byte, error) {
	n := loc.recordSize()
	if d := loc.pack.direct; d != nil && loc.size >= directRecordMin {
		start := loc.off &^ (directio.Align - 1)
		end := directio.Up(loc.off + n)
		got, err := d.ReadAt(buf[:end-start], start)
		if int64(got) >= loc.off-start+n && (err == nil || errors.Is(err, io.EOF)) {
			return buf[loc.off-start : loc.off-start+n], nil
		}
		if err != nil && !directio.Refused(err) {
			return nil, err
		}
	}
	rec := buf[:n]
	_, err := loc.pack.f.ReadAt(rec, loc.off)
	return rec, err
}

// closeDirect closes the pack's direct handle, if any. The caller holds pmu, or owns p.
func (p *pack) closeDirect() {
	if p.direct != nil {
		p.direct.Close()
		p.direct = nil
	}
}
