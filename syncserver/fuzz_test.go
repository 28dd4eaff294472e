package syncserver

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// The fuzz targets below drive every request decoder. Their seed corpora run as plain
// tests in `make test`; `make fuzz` explores further. Each checks the decoder's promise:
// never panic, and whatever it accepts is valid.

func FuzzDecodeCommit(f *testing.F) {
	for _, s := range []string{
		`{"items":[{"path":"a","type":"file","size":1,"sha256":"` + sha([]byte("a")) + `","data":"YQ=="}]}`,
		`{"items":[{"path":"d","type":"dir","mode":493},{"path":"l","type":"symlink","target":"d"}]}`,
		`{"items":[{"path":"../x","type":"file","blocks":[{"hash":"00","size":-1}]}]}`,
		`{"items":[]}`, `{"items":7}`, `{`, ``, `null`, `{"items":[null]}`,
		`{"items":[{"path":"b","type":"file","size":1,"sha256":"` + sha([]byte("a")) + `","copyFrom":{"path":"a","seq":1}}],"omitBlocks":true}`,
		`{"items":[{"path":"a","baseSeq":1,"type":"file","size":1,"sha256":"` + sha([]byte("a")) + `","blocksDelta":{"baseSeq":1,"head":0,"tail":1}}]}`,
		`{"items":[{"path":"a","type":"file","size":1,"sha256":"00","copyFrom":{"path":"../a","seq":-1},"blocksDelta":{"head":-1}}]}`,
	} {
		f.Add([]byte(s))
	}
	cfg := DefaultConfig()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCommit(bytes.NewReader(body), 100)
		if err != nil {
			return
		}
		if len(req.Items) == 0 || len(req.Items) > 100 {
			t.Fatalf("accepted %d items", len(req.Items))
		}
		for _, it := range req.Items {
			e, err := validateItem(it, cfg)
			if err != nil {
				continue
			}
			if _, err := proto.CleanPath(e.Path); err != nil {
				t.Fatalf("accepted bad path %q", e.Path)
			}
			if e.Type == proto.TypeFile && (it.CopyFrom != nil || it.BlocksDelta != nil) {
				if len(e.Blocks) != 0 || it.Data != nil || (it.CopyFrom != nil) == (it.BlocksDelta != nil) {
					t.Fatalf("accepted a reference with a list, data or both references: %+v", it)
				}
				if r := it.CopyFrom; r != nil {
					if _, perr := proto.CleanPath(r.Path); perr != nil || r.Seq <= 0 {
						t.Fatalf("accepted copyFrom %+v", *r)
					}
				}
				if d := it.BlocksDelta; d != nil && (d.BaseSeq <= 0 || d.Head < 0 || d.Tail < 0) {
					t.Fatalf("accepted blocksDelta %+v", *d)
				}
				continue
			}
			if e.Type == proto.TypeFile {
				var sum int64
				for _, b := range e.Blocks {
					if !blobs.ValidHash(b.Hash) || b.Size <= 0 {
						t.Fatalf("accepted bad block %+v", b)
					}
					sum += b.Size
				}
				if sum != e.Size || !blobs.ValidHash(e.SHA256) {
					t.Fatalf("accepted file with blocks summing to %d, size %d", sum, e.Size)
				}
				if it.Data != nil && int64(len(it.Data)) != e.Size {
					t.Fatalf("accepted %d inlined bytes for size %d", len(it.Data), e.Size)
				}
			}
		}
	})
}

func FuzzDecodeCommitFrames(f *testing.F) {
	f.Add(frames(false, inlineItem("a", 0, []byte("a"))))
	f.Add(frames(true, proto.CommitItem{Path: "d", Type: proto.TypeDir}, inlineItem("d/b", 0, []byte("bb"))))
	f.Add(frames(false))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		arena := &frameArena{}
		defer arena.release()
		req, err := decodeCommitFrames(bytes.NewReader(body), 100, 1<<20, arena)
		if err != nil {
			return
		}
		if len(req.Items) == 0 || len(req.Items) > 100 {
			t.Fatalf("accepted %d items", len(req.Items))
		}
		cfg := DefaultConfig()
		for i, it := range req.Items {
			if it.Data != nil && len(it.Data) == 0 {
				t.Fatalf("item %d: empty content frame decoded as inlined data", i)
			}
			_, _ = validateItem(it, cfg) // must not panic on anything that decodes
		}
	})
}

func FuzzDecodeDelete(f *testing.F) {
	for _, s := range []string{`{"items":[{"path":"a","baseSeq":3}]}`, `{"items":[]}`, `[]`, `{"items":[{"path":1}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeDelete(bytes.NewReader(body), 50)
		if err == nil && (len(req.Items) == 0 || len(req.Items) > 50) {
			t.Fatalf("accepted %d items", len(req.Items))
		}
	})
}

func FuzzDecodeMissing(f *testing.F) {
	for _, s := range []string{`{"hashes":["` + sha(nil) + `"]}`, `{"hashes":[]}`, `{"hashes":["ABC"]}`, `{}`, `{"hashes":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeMissing(bytes.NewReader(body), 10)
		if err != nil {
			return
		}
		for _, h := range req.Hashes {
			if !blobs.ValidHash(h) {
				t.Fatalf("accepted hash %q", h)
			}
		}
	})
}

func FuzzDecodeRestore(f *testing.F) {
	for _, s := range []string{`{"path":"a","seq":2,"baseSeq":5}`, `{"path":"a","seq":0}`, `{"path":"/a","seq":1}`, `{"seq":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRestore(bytes.NewReader(body))
		if err != nil {
			return
		}
		if _, perr := proto.CleanPath(req.Path); perr != nil || req.Seq <= 0 || req.BaseSeq < 0 {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func FuzzDecodeLegacyDelete(f *testing.F) {
	for _, s := range []string{`{"path":"a/b"}`, `{"path":""}`, `{"path":"../etc"}`, `"a"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeLegacyDelete(bytes.NewReader(body))
		if err != nil {
			return
		}
		if _, perr := proto.CleanPath(p); perr != nil {
			t.Fatalf("accepted path %q", p)
		}
	})
}

func FuzzParseQueries(f *testing.F) {
	for _, s := range []string{"since=3&wait=30s&limit=10", "since=-1", "wait=2.5", "limit=0", "path=a&seq=4",
		"path=a&agent=x&before=9&limit=5", "path=%00", "seq=-2&path=a", "wait=1e300",
		"since=1&maxBlocks=64", "maxBlocks=-1", "path=a&seq=5&baseSeq=3", "path=a&baseSeq=0"} {
		f.Add(s)
	}
	maxWait := time.Minute
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if c, err := parseChanges(q, maxWait); err == nil {
			if c.since < 0 || c.wait < 0 || c.wait > maxWait || c.limit <= 0 || c.limit > maxChangesLimit || c.maxBlocks < -1 {
				t.Fatalf("parseChanges accepted %+v", c)
			}
		}
		if a, err := parseAudit(q); err == nil {
			if a.Limit <= 0 || a.Before < 0 {
				t.Fatalf("parseAudit accepted %+v", a)
			}
			if a.Path != "" {
				if _, perr := proto.CleanPath(a.Path); perr != nil {
					t.Fatalf("parseAudit accepted path %q", a.Path)
				}
			}
		}
		if p, seq, base, err := parseEntryQuery(q); err == nil {
			if _, perr := proto.CleanPath(p); perr != nil || seq < 0 || base < 0 {
				t.Fatalf("parseEntryQuery accepted %q, %d, %d", p, seq, base)
			}
		}
		if p, seq, err := parsePathSeq(q); err == nil {
			if _, perr := proto.CleanPath(p); perr != nil || seq < 0 {
				t.Fatalf("parsePathSeq accepted %q, %d", p, seq)
			}
		}
	})
}

func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{"tok-aaaaaaaaaaaaaaaa laptop\n", "# c\n\n", "a b c\n", "tok-aaaaaaaaaaaaaaaa x\ntok-aaaaaaaaaaaaaaaa y\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseTokens(strings.NewReader(in))
		if err != nil {
			return
		}
		if a.Len() == 0 {
			t.Fatal("accepted a file without tokens")
		}
		if _, err := a.Authenticate(t.Context(), ""); !errors.Is(err, ErrUnauthenticated) {
			t.Fatal("empty token accepted")
		}
	})
}

func TestDecodeMissingNullHashes(t *testing.T) {
	req, err := decodeMissing(strings.NewReader(`{"hashes":null}`), 10)
	if err != nil || len(req.Hashes) != 0 {
		t.Fatalf("null hashes: %+v, %v", req, err)
	}
	if _, err := decodeMissing(strings.NewReader(`{"items":[]}`), 10); err == nil {
		t.Fatal("a body without hashes was accepted")
	}
}
