package syncserver

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

var badPaths = map[string]string{
	"empty":     "",
	"absolute":  "/etc/passwd",
	"dotdot":    "a/../b",
	"dot":       "a/./b",
	"nul":       "a\x00b",
	"backslash": `a\b`,
	"too long":  strings.Repeat("abcdefgh/", 456) + "x", // 4105 bytes
}

// TestBadInputChangesNothing sends every kind of bad input the issue lists and checks
// each gets a 4xx JSON error (or a per-item error in a batch) and leaves the folder as
// it was.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) {
		c.MaxCommitBody = 64 << 10
		c.MaxJSONBody = 8 << 10
		c.MaxBlockSize = 32 << 10
		c.MaxFileSize = 100 << 10
	}))
	e.commit(inlineItem("keep.txt", 0, []byte("keep")))
	before := e.snapshot()

	expect := func(t *testing.T, name string, code int, raw []byte, want int) {
		t.Helper()
		var body proto.Error
		if code != want {
			t.Errorf("%s: status %d, want %d (%s)", name, code, want, raw)
			return
		}
		if err := jsonUnmarshal(raw, &body); err != nil || body.Error == "" {
			t.Errorf("%s: body %q is not a JSON error", name, raw)
		}
	}

	for name, p := range badPaths {
		t.Run("path "+name, func(t *testing.T) {
			q := url.QueryEscape(p)
			for _, route := range []string{proto.RouteEntry, proto.RouteFile, proto.RouteVersions, proto.RouteLegacyDownload} {
				code, raw := e.do("GET", route+"?path="+q, nil, nil)
				expect(t, route, code, raw, 400)
			}
			code, raw := e.do("POST", proto.RouteRestore, proto.RestoreRequest{Path: p, Seq: 1, BaseSeq: 1}, nil)
			expect(t, "restore", code, raw, 400)
			code, raw = e.do("POST", proto.RouteLegacyDelete, map[string]string{"path": p}, nil)
			expect(t, "legacy delete", code, raw, 400)
			if code, up := e.upload(p, "", []byte("x")); code != 400 || up.Error == "" {
				t.Errorf("upload: %d %+v", code, up)
			}
			r := e.commit(inlineItem(p, 0, []byte("x")))[0]
			if r.Status != proto.StatusError || !strings.Contains(r.Error, "invalid path") {
				t.Errorf("commit item: %+v", r)
			}
			var del proto.CommitResponse
			e.do("POST", proto.RouteDelete, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: p, BaseSeq: 1}}}, &del)
			if len(del.Results) != 1 || del.Results[0].Status != proto.StatusError {
				t.Errorf("delete item: %+v", del.Results)
			}
		})
	}

	t.Run("body over the limit", func(t *testing.T) {
		big := inlineItem("big", 0, bytes.Repeat([]byte("x"), 70<<10))
		code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{big}}, nil)
		expect(t, "commit", code, raw, 413)
		code, raw = e.do("POST", proto.RouteBlocksMissing, `{"hashes":["`+strings.Repeat("a", 9<<10)+`"]}`, nil)
		expect(t, "missing", code, raw, 413)
		blk := bytes.Repeat([]byte("y"), 40<<10)
		code, raw = e.do("PUT", proto.RouteBlocks+sha(blk), blk, nil)
		expect(t, "block", code, raw, 413)
		code, _ = e.upload("huge.bin", "", bytes.Repeat([]byte("z"), 200<<10))
		if code != 413 {
			t.Errorf("upload over max file size: %d", code)
		}
		over := proto.CommitItem{Path: "over", Type: proto.TypeFile, Size: 200 << 10, SHA256: sha(nil),
			Blocks: []proto.Block{{Hash: sha(nil), Size: 200 << 10}}}
		if r := e.commit(over)[0]; r.Status != proto.StatusError || !strings.Contains(r.Error, "limit") {
			t.Errorf("commit over max file size: %+v", r)
		}
	})

	t.Run("block content does not match its hash", func(t *testing.T) {
		code, raw := e.do("PUT", proto.RouteBlocks+sha([]byte("claimed")), []byte("actual"), nil)
		expect(t, "block", code, raw, 400)
		code, raw = e.do("PUT", proto.RouteBlocks+"NOT-A-HASH", []byte("actual"), nil)
		expect(t, "bad hash", code, raw, 400)
		code, raw = e.do("PUT", proto.RouteBlocks+sha([]byte("actual")), []byte("actual"), nil, "Content-Encoding", "zstd")
		expect(t, "not zstd", code, raw, 400)
		code, raw = e.do("PUT", proto.RouteBlocks+sha([]byte("actual")), []byte("actual"), nil, "Content-Encoding", "br")
		expect(t, "unknown encoding", code, raw, 415)
	})

	t.Run("commit naming a block the server lacks", func(t *testing.T) {
		content := []byte("never uploaded")
		it := proto.CommitItem{Path: "lacks", Type: proto.TypeFile, Size: int64(len(content)), SHA256: sha(content),
			Blocks: []proto.Block{{Hash: sha(content), Size: int64(len(content))}}}
		if r := e.commit(it)[0]; r.Status != proto.StatusError || !strings.Contains(r.Error, "not stored") {
			t.Errorf("%+v", r)
		}
	})

	t.Run("malformed JSON", func(t *testing.T) {
		for _, route := range []string{proto.RouteCommit, proto.RouteDelete, proto.RouteBlocksMissing, proto.RouteRestore, proto.RouteLegacyDelete} {
			for _, body := range []string{"", "{", `{"items": 7}`, `{"items":[]} trailing`, "[1,2]"} {
				code, raw := e.do("POST", route, body, nil)
				expect(t, route+" "+body, code, raw, 400)
			}
		}
		code, raw := e.do("POST", proto.RouteLegacyUpload, "not multipart", nil, "Content-Type", "text/plain")
		expect(t, "upload not multipart", code, raw, 400)
		for _, q := range []string{"since=-1", "since=x", "limit=0", "limit=99999999", "wait=forever"} {
			code, raw := e.do("GET", proto.RouteChanges+"?"+q, nil, nil)
			expect(t, "changes "+q, code, raw, 400)
		}
		for _, q := range []string{"limit=0", "before=x", "path=/abs"} {
			code, raw := e.do("GET", proto.RouteAudit+"?"+q, nil, nil)
			expect(t, "audit "+q, code, raw, 400)
		}
		code, raw = e.do("GET", proto.RouteLegacyLogs+"?limit=-3", nil, nil)
		expect(t, "logs", code, raw, 400)
		code, raw = e.do("GET", proto.RouteFile+"?path=keep.txt&seq=zero", nil, nil)
		expect(t, "file seq", code, raw, 400)
	})

	t.Run("bad commit items", func(t *testing.T) {
		items := []proto.CommitItem{
			{Path: "t", Type: "socket"},
			{Path: "m", Type: proto.TypeDir, Mode: 0o17777},
			{Path: "d", Type: proto.TypeDir, Size: 3},
			{Path: "s", Type: proto.TypeSymlink},
			{Path: "f", Type: proto.TypeFile, Size: 1, SHA256: "xyz", Data: []byte("a")},
			{Path: "g", Type: proto.TypeFile, Size: 2, SHA256: sha([]byte("a")), Data: []byte("a")},
			{Path: "n", Type: proto.TypeFile, Size: -1, SHA256: sha(nil)},
			{Path: "b", Type: proto.TypeFile, BaseSeq: -4, Size: 0, SHA256: sha(nil)},
		}
		for i, r := range e.commit(items...) {
			if r.Status != proto.StatusError || r.Error == "" {
				t.Errorf("item %d (%s): %+v", i, items[i].Path, r)
			}
		}
	})

	if after := e.snapshot(); after != before {
		t.Fatalf("bad input changed the folder: %+v → %+v", before, after)
	}
	var idx map[string]LegacyIndexEntry
	e.do("GET", proto.RouteLegacyIndex, nil, &idx)
	if len(idx) != 1 {
		t.Fatalf("index after bad input: %v", idx)
	}
}
