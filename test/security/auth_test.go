package security

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// legacyUpload builds the original API's multipart upload of content at p.
func legacyUpload(t *testing.T, p string, content []byte) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("path", p); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "upload")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

// endpoints lists every authenticated route with a request that, with a valid token,
// would succeed; mutating tells which of them change the server.
func endpoints(t *testing.T, existing proto.Entry, secret []byte) []struct {
	req      request
	mutating bool
} {
	newContent := []byte("content an attacker wants stored")
	h := sum(newContent)
	upBody, upType := legacyUpload(t, "attacker-legacy.txt", newContent)
	commit := jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{
		Path: "attacker.txt", Type: proto.TypeFile, Mode: 0o644, Size: int64(len(newContent)), SHA256: h, Data: newContent,
	}}})
	const js = "application/json"
	p := existing.Path
	return []struct {
		req      request
		mutating bool
	}{
		{request{method: "GET", target: proto.RouteChanges + "?since=0"}, false},
		{request{method: "POST", target: proto.RouteBlocksMissing, body: jsonBody(t, proto.MissingBlocksRequest{Hashes: []string{h}}), contentType: js}, false},
		{request{method: "PUT", target: proto.RouteBlocks + h, body: newContent, contentType: "application/octet-stream"}, true},
		{request{method: "GET", target: proto.RouteBlocks + existing.SHA256}, false},
		{request{method: "POST", target: proto.RouteCommit, body: commit, contentType: js}, true},
		{request{method: "POST", target: proto.RouteDelete, body: jsonBody(t, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: p, BaseSeq: existing.Seq}}}), contentType: js}, true},
		{request{method: "GET", target: proto.RouteEntry + "?path=" + p}, false},
		{request{method: "GET", target: proto.RouteFile + "?path=" + p}, false},
		{request{method: "GET", target: proto.RouteVersions + "?path=" + p}, false},
		{request{method: "POST", target: proto.RouteRestore, body: jsonBody(t, proto.RestoreRequest{Path: p, Seq: existing.Seq, BaseSeq: existing.Seq}), contentType: js}, true},
		{request{method: "GET", target: proto.RouteConflicts}, false},
		{request{method: "GET", target: proto.RouteAudit}, false},
		{request{method: "GET", target: proto.RouteStats}, false},
		{request{method: "GET", target: proto.RouteLegacyIndex}, false},
		{request{method: "GET", target: proto.RouteLegacyDownload + "?path=" + p}, false},
		{request{method: "POST", target: proto.RouteLegacyUpload, body: upBody, contentType: upType}, true},
		{request{method: "POST", target: proto.RouteLegacyDelete, body: jsonBody(t, map[string]string{"path": p}), contentType: js}, true},
		{request{method: "GET", target: proto.RouteLegacyLogs}, false},
		{request{method: "GET", target: proto.RouteUploads + "?after=0"}, false},
		// The upload streams' calls: with the token they open or feed a stream, or find
		// no upload (404), so the replay with the token below, which wants a 200, leaves
		// them out as it does the mutating ones.
		{request{method: "POST", target: proto.RouteStreams + "s" + proto.StreamOpenSuffix, body: jsonBody(t, proto.StreamOpenRequest{Path: "attacker.bin", Size: 1}), contentType: js}, true},
		{request{method: "GET", target: proto.RouteUploadBlocks + "1"}, true},
		{request{method: "POST", target: proto.RouteStreams + "s" + proto.StreamBlocksSuffix, body: jsonBody(t, proto.StreamBlocksRequest{Base: proto.ContentRef{Path: p, Seq: existing.Seq}, Count: 1}), contentType: js}, true},
		{request{method: "POST", target: proto.RouteStreams + "s" + proto.StreamSumSuffix, body: jsonBody(t, proto.StreamSumRequest{Size: 1, Blocks: 1}), contentType: js}, true},
	}
}

func TestEveryEndpointRefusesMissingAndWrongTokens(t *testing.T) {
	s := newServer(t, syncserver.Config{})
	secret := []byte("the secret content of an existing file")
	existing := s.commitFile("existing.txt", secret)

	badAuth := []struct{ name, header string }{
		{"no header", ""},
		{"wrong token", "Bearer not-the-token"},
		{"empty bearer", "Bearer "},
		{"prefix of the token", "Bearer " + goodToken[:len(goodToken)-1]},
		{"token plus a suffix", "Bearer " + goodToken + "x"},
		{"basic scheme", "Basic " + goodToken},
		{"token without scheme", goodToken},
	}
	for _, ep := range endpoints(t, existing, secret) {
		for _, ba := range badAuth {
			t.Run(fmt.Sprintf("%s %s/%s", ep.req.method, ep.req.target, ba.name), func(t *testing.T) {
				s.t = t
				before := s.snapshot()
				r := ep.req
				r.rawAuth = ba.header
				if ba.header == "" {
					r.rawAuth, r.token = "", ""
				}
				code, body := s.do(r)
				if code != http.StatusUnauthorized || !isJSONError(body) {
					t.Errorf("got %d %q, want 401 with a JSON error", code, body)
				}
				if bytes.Contains(body, secret) || bytes.Contains(body, []byte(existing.SHA256)) {
					t.Errorf("a refused request learned something: %q", body)
				}
				s.unchanged(before, "a request without a valid token")
			})
		}
	}
	// The same requests with the token do work: the refusals above were for the token
	// alone, not for a malformed request.
	s.t = t
	for _, ep := range endpoints(t, existing, secret) {
		if !ep.mutating {
			r := ep.req
			r.token = goodToken
			if code, body := s.do(r); code != http.StatusOK {
				t.Errorf("%s %s with the token: %d %s", r.method, r.target, code, body)
			}
		}
	}
	before := s.snapshot()
	r := endpoints(t, existing, secret)[4].req // the commit
	r.token = goodToken
	if code, body := s.do(r); code != http.StatusOK {
		t.Fatalf("commit with the token: %d %s", code, body)
	}
	if s.snapshot().seq == before.seq {
		t.Fatal("a commit with the token changed nothing: the no-change checks above prove nothing")
	}
}

func TestOpenEndpointsLeakNothing(t *testing.T) {
	s := newServer(t, syncserver.Config{})
	secret := []byte("secret bytes that only token holders may read")
	s.commitFile("private/plans.txt", secret)
	for _, route := range []string{proto.RouteHealthz, proto.RouteReadyz, proto.RouteMetrics} {
		code, body := s.do(request{method: "GET", target: route})
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", route, code)
		}
		if bytes.Contains(body, secret) || bytes.Contains(body, []byte("plans.txt")) {
			t.Errorf("GET %s without a token shows folder content or paths:\n%s", route, body)
		}
	}
}
