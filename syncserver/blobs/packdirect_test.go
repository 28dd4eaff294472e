package blobs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/directio"
)

// captureLog sends the store's warnings to a buffer for the test's duration.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

// With WithDirectIO, large streamed records are written and read directly, small ones
// through the cache, in the same packs; whichever way a record went, it reads back the
// same, survives a reopen (by scan and by .idx) with the other setting and a compaction
// there, and the padding after a direct record is not taken for damage. The same checks
// run with direct I/O off, the default and the path of systems without it.
func TestPacksHoldDirectAndCachedRecords(t *testing.T) {
	for _, direct := range []bool{true, false} {
		name := "cached"
		if direct {
			name = "direct"
		}
		t.Run(name, func(t *testing.T) {
			if direct && !haveDirectIO(t) {
				t.Skip("direct I/O is set up on Linux only")
			}
			defer func(v int64) { packTargetSize = v }(packTargetSize)
			packTargetSize = 1 << 20 // a few packs, the first ones sealed
			logs := captureLog(t)
			s, dir := openStore(t, WithDirectIO(direct))
			var blocks [][]byte
			var hashes []string
			// The last pack, which Open scans, ends with a large streamed record and
			// its padding.
			for i, n := range []int{5000, 300 << 10, 100, directRecordMin, directRecordMin - 1, 700 << 10,
				maxPackedBlock, 64, 3 << 10, 1 << 20, 10, 123457, 200 << 10} {
				b := randomBytes(t, n)
				blocks, hashes = append(blocks, b), append(hashes, hashOf(b))
				if i%4 == 2 {
					putMany(t, s, b)
				} else if _, _, err := s.Put(hashOf(b), bytes.NewReader(b), 0); err != nil {
					t.Fatal(err)
				}
				loc := packedLoc(t, s, hashOf(b))
				aligned := loc.off%directio.Align == 0
				if direct && n >= directRecordMin && i%4 != 2 && !aligned {
					t.Fatalf("a %d-byte streamed record at offset %d; want it written directly, aligned", n, loc.off)
				}
				if !direct && loc.pack.direct != nil {
					t.Fatal("a pack has a direct handle with direct I/O off")
				}
			}
			for _, b := range blocks {
				wantBlock(t, s, b)
			}
			if err := s.Sync(hashes); err != nil {
				t.Fatal(err)
			}
			if n := len(packFiles(t, dir)); n < 3 {
				t.Fatalf("%d packs; want at least 3, some sealed", n)
			}
			// Reopened with the other setting, which then compacts the packs.
			s = reopen(t, s, dir, WithDirectIO(!direct))
			for _, b := range blocks {
				wantBlock(t, s, b)
			}
			if strings.Contains(logs.String(), "torn") {
				t.Fatalf("a pack was reported torn at reopen:\n%s", logs)
			}

			// Collect every other block: the packs are mostly dead and get compacted.
			keep := map[string]bool{}
			for i, h := range hashes {
				keep[h] = i%2 == 0
			}
			referenced := func(h string) bool { return keep[h] }
			for range 2 {
				if _, _, err := s.GC(context.Background(), referenced, time.Now().Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			for i, b := range blocks {
				if i%2 == 0 {
					wantBlock(t, s, b)
				} else {
					wantAbsent(t, s, b)
				}
			}
			s = reopen(t, s, dir)
			for i, b := range blocks {
				if i%2 == 0 {
					wantBlock(t, s, b)
				}
			}
			if strings.Contains(logs.String(), "torn") || strings.Contains(logs.String(), "damaged") {
				t.Fatalf("the store reported damage:\n%s", logs)
			}
		})
	}
}
