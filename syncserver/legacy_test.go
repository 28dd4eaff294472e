package syncserver

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// upload posts the original API's multipart form; baseSHA "" leaves the field out.
func (e *testEnv) upload(p, baseSHA string, content []byte) (int, LegacyUploadResponse) {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("path", p)
	if baseSHA != "" {
		_ = mw.WriteField("base_sha", baseSHA)
	}
	fw, _ := mw.CreateFormFile("file", "upload.bin")
	_, _ = fw.Write(content)
	_ = mw.Close()
	var out LegacyUploadResponse
	code, _ := e.do("POST", proto.RouteLegacyUpload, buf.Bytes(), &out, "Content-Type", mw.FormDataContentType())
	return code, out
}

func TestLegacyAPI(t *testing.T) {
	e := newEnv(t)
	v1 := []byte("hello from the original client")
	code, up := e.upload("dir/report.txt", "", v1)
	if code != 200 || up.Path != "dir/report.txt" || up.SHA != sha(v1) || up.Version != 1 {
		t.Fatalf("upload: %d %+v", code, up)
	}
	// A big upload is cut into several blocks and comes back whole.
	big := bytes.Repeat([]byte("0123456789"), 900_000)
	for i := range big {
		big[i] ^= byte(i * 7919 >> 5)
	}
	if code, up := e.upload("big.bin", "", big); code != 200 || up.SHA != sha(big) {
		t.Fatalf("big upload: %d %+v", code, up)
	}
	if ent, _ := e.store.Get(t.Context(), "big.bin"); len(ent.Blocks) < 2 {
		t.Fatalf("big upload in %d blocks", len(ent.Blocks))
	}
	if code, body := e.do("GET", proto.RouteLegacyDownload+"?path=big.bin", nil, nil); code != 200 || !bytes.Equal(body, big) {
		t.Fatalf("download big: %d, %d bytes", code, len(body))
	}

	// Right base: overwritten.
	v2 := []byte("second")
	if code, up := e.upload("dir/report.txt", sha(v1), v2); code != 200 || up.Version != 3 {
		t.Fatalf("upload on the right base: %d %+v", code, up)
	}
	// Stale base: kept as a conflict copy, the file untouched.
	v3 := []byte("edited from an old copy")
	code, up = e.upload("dir/report.txt", sha(v1), v3)
	if code != http.StatusConflict || !strings.HasPrefix(up.ConflictPath, "dir/report.sync-conflict-") ||
		!strings.HasSuffix(up.ConflictPath, "-anonymous.txt") || up.Error == "" {
		t.Fatalf("stale upload: %d %+v", code, up)
	}
	if code, body := e.do("GET", proto.RouteLegacyDownload+"?path=dir/report.txt", nil, nil); code != 200 || !bytes.Equal(body, v2) {
		t.Fatalf("file after a conflict: %d %q", code, body)
	}
	if code, body := e.do("GET", proto.RouteLegacyDownload+"?path="+up.ConflictPath, nil, nil); code != 200 || !bytes.Equal(body, v3) {
		t.Fatalf("conflict copy: %d %q", code, body)
	}

	var idx map[string]LegacyIndexEntry
	e.do("GET", proto.RouteLegacyIndex, nil, &idx)
	if len(idx) != 3 || idx["dir/report.txt"].SHA != sha(v2) || idx["dir/report.txt"].Version != 3 || idx["dir/report.txt"].MTime < 1e9 {
		t.Fatalf("index %+v", idx)
	}

	var errBody proto.Error
	if code, _ := e.do("GET", proto.RouteLegacyDownload+"?path=nope", nil, &errBody); code != 404 || errBody.Error == "" {
		t.Fatalf("download unknown: %d %+v", code, errBody)
	}
	if code, _ := e.do("POST", proto.RouteLegacyDelete, `{"path":"dir/report.txt"}`, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := e.do("POST", proto.RouteLegacyDelete, `{"path":"dir/report.txt"}`, &errBody); code != 404 {
		t.Fatalf("delete again: %d", code)
	}
	if code, _ := e.do("GET", proto.RouteLegacyDownload+"?path=dir/report.txt", nil, nil); code != 404 {
		t.Fatalf("download deleted: %d", code)
	}

	var logs []LegacyLogRecord
	e.do("GET", proto.RouteLegacyLogs+"?limit=2", nil, &logs)
	if len(logs) != 2 || logs[0].Action != proto.ActionDelete || logs[0].Path != "dir/report.txt" || logs[0].Agent != "anonymous" ||
		logs[1].Action != proto.ActionConflict || logs[0].Timestamp.IsZero() {
		t.Fatalf("logs %+v", logs)
	}
	e.do("GET", proto.RouteLegacyLogs, nil, &logs)
	if len(logs) != 5 {
		t.Fatalf("%d log rows, want 5", len(logs))
	}
}
