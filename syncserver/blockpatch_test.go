package syncserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestBlockPatchUpload(t *testing.T) {
	e := newEnv(t)
	base := bigContent(64, 'p')
	bh := e.putBlock(base)
	edited := bytes.Clone(base)
	edited[30000] ^= 0xff
	eh := sha(edited)
	cl, err := client.New(client.Options{BaseURL: e.http.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sums, err := cl.BlockSums(ctx, bh)
	if err != nil {
		t.Fatal(err)
	}
	head, tail := proto.PatchOf(*sums, edited)
	if sent := int64(len(edited)) - head - tail; sent != proto.SumChunk {
		t.Fatalf("head %d, tail %d: %d bytes to send; want the changed chunk", head, tail, sent)
	}
	if err := cl.PutStreamBlockPatch(ctx, eh, edited, bh, head, tail, "", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.GetBlock(ctx, eh); err != nil || !bytes.Equal(got, edited) {
		t.Fatalf("the patched block: %v", err)
	}

	// Bad patches store nothing.
	other := append(bytes.Clone(base), "other end"...)
	oh := sha(other)
	before := e.snapshot()
	for _, c := range []struct {
		name  string
		query string
		body  []byte
		code  int
	}{
		{"bad base", "?base=xyz&head=0&tail=0", other, 400},
		{"no head", "?base=" + bh + "&tail=0", other, 400},
		{"negative tail", "?base=" + bh + "&head=0&tail=-1", other, 400},
		{"unknown base", "?base=" + sha([]byte("unknown")) + "&head=0&tail=0", other, 404},
		{"more than the base", fmt.Sprintf("?base=%s&head=%d&tail=%d", bh, len(base), 1), nil, 400},
		{"wrong bytes between", fmt.Sprintf("?base=%s&head=%d&tail=0", bh, len(base)), []byte("other END"), 400},
	} {
		if code, raw := e.do("PUT", proto.RouteBlocks+oh+c.query, c.body, nil); code != c.code {
			t.Errorf("%s: %d %s; want %d", c.name, code, raw, c.code)
		}
	}
	if _, err := cl.GetBlock(ctx, oh); !client.IsNotFound(err) {
		t.Errorf("a refused patch stored its block: %v", err)
	}
	if after := e.snapshot(); after != before {
		t.Errorf("refused patches changed the folder: %+v → %+v", before, after)
	}
	// The right patch of it is taken.
	if code, raw := e.do("PUT", fmt.Sprintf("%s%s?base=%s&head=%d&tail=0", proto.RouteBlocks, oh, bh, len(base)), []byte("other end"), nil); code != 201 {
		t.Errorf("patch: %d %s", code, raw)
	}

	if code, raw := e.do("GET", proto.RouteBlocks+"xyz"+proto.SumsSuffix, nil, nil); code != 400 {
		t.Errorf("sums of a bad hash: %d %s", code, raw)
	}
	if _, err := cl.BlockSums(ctx, sha([]byte("unknown"))); !client.IsNotFound(err) {
		t.Errorf("sums of an unknown block: %v", err)
	}
}

// A block too large to serve as a patch's base (over maxPatchBase) is the request's
// fault: its sums and a patch against it are refused with a 400, not a server error.
func TestPatchBaseTooLargeIsRefused(t *testing.T) {
	e := newEnv(t)
	big := randomContent(t, maxPatchBase+1)
	bh := e.putBlock(big)
	code, raw := e.do("GET", proto.RouteBlocks+bh+"/sums", nil, nil)
	if code != http.StatusBadRequest {
		t.Errorf("sums of a block of %d bytes: %d %s; want 400", len(big), code, raw)
	}
	req, err := http.NewRequest("PUT", fmt.Sprintf("%s%s%s?base=%s&head=0&tail=0", e.http.URL, proto.RouteBlocks, sha([]byte("x")), bh),
		strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("patch against a block of %d bytes: %d; want 400", len(big), resp.StatusCode)
	}
}
