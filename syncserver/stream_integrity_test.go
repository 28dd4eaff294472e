package syncserver

import (
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A randomized check of the first rule over upload streams, checkpoints and sums: the
// server accepts a commit only when its sha256 is the content of its list, and a sum
// answers only the hash of the named list's content.
func TestStreamsNeverVouchForAWrongList(t *testing.T) {
	defer func(v int64) { checkpointEvery = v }(checkpointEvery)
	checkpointEvery = 4 << 10
	e := newEnv(t)
	rng := mrand.New(mrand.NewPCG(uint64(streamCheckSeed), 2))
	pool := map[string][]byte{}
	var poolList []proto.Block
	for i := 0; i < 24; i++ {
		b := randomContent(t, 1+rng.IntN(3000))
		h := e.putBlock(b)
		pool[h] = b
		poolList = append(poolList, proto.Block{Hash: h, Size: int64(len(b))})
	}
	content := func(l []proto.Block) []byte {
		var out []byte
		for _, b := range l {
			out = append(out, pool[b.Hash]...)
		}
		return out
	}
	randList := func(n int) []proto.Block {
		l := make([]proto.Block, n)
		for i := range l {
			l[i] = poolList[rng.IntN(len(poolList))]
		}
		return l
	}
	type version struct {
		path string
		seq  int64
		list []proto.Block
	}
	var versions []version
	for i := 0; i < 4; i++ {
		l := randList(5 + rng.IntN(25))
		it := proto.CommitItem{Path: fmt.Sprintf("base%d", i), Type: proto.TypeFile, Size: int64(len(content(l))),
			Mode: 0o644, MTimeNs: 1, SHA256: sha(content(l)), Blocks: l}
		r := e.commit(it)[0]
		if r.Status != proto.StatusOK {
			t.Fatalf("base: %+v", r)
		}
		versions = append(versions, version{it.Path, r.Entry.Seq, l})
	}
	for trial := 0; trial < 150; trial++ {
		stream := fmt.Sprintf("s%d", trial)
		// The target list: stretches of base versions and pool blocks.
		type seg struct {
			list  []proto.Block
			v     *version
			from  int
			byRef bool
			off   int64
		}
		var segs []seg
		var target []proto.Block
		var off int64
		for n := 1 + rng.IntN(4); n > 0; n-- {
			var s seg
			if rng.IntN(2) == 0 {
				v := &versions[rng.IntN(len(versions))]
				from := rng.IntN(len(v.list))
				cnt := 1 + rng.IntN(len(v.list)-from)
				s = seg{list: v.list[from : from+cnt], v: v, from: from, byRef: rng.IntN(3) != 0}
			} else {
				s = seg{list: randList(1 + rng.IntN(6))}
			}
			s.off = off
			for _, b := range s.list {
				off += b.Size
			}
			segs = append(segs, s)
			target = append(target, s.list...)
		}
		// The upload is opened as the path of the first version named, so that readers
		// holding that version get runs.
		var runsOf *version
		for _, s := range segs {
			if s.byRef {
				runsOf = s.v
				break
			}
		}
		var no int64
		if runsOf != nil {
			no = e.openStream(stream, runsOf.path, off)
		}
		// Send the segments in a random order; sometimes a stray block at a wrong offset.
		for _, i := range rng.Perm(len(segs)) {
			s := segs[i]
			if s.byRef {
				e.streamStored(stream, s.off, s.v.path, s.v.seq, s.from, len(s.list))
				continue
			}
			o := s.off
			offs := make([]int64, len(s.list))
			for j, b := range s.list {
				offs[j] = o
				o += b.Size
			}
			for _, j := range rng.Perm(len(s.list)) {
				b := s.list[j]
				if rng.IntN(10) == 0 {
					stray := poolList[rng.IntN(len(poolList))]
					e.putStreamBlock(pool[stray.Hash], stream, int(offs[j]))
				}
				e.putStreamBlock(pool[b.Hash], stream, int(offs[j]))
			}
		}
		if runsOf != nil {
			_, plain, _ := e.uploadBlocks(no, "")
			_, byRuns, raw := e.uploadBlocks(no, fmt.Sprintf("?base=%d", runsOf.seq))
			got, err := byRuns.Expand(runsOf.list)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(plain.Blocks) {
				t.Fatalf("trial %d: runs %s expand to %v (%v); the upload's blocks are %v", trial, raw, got, err, plain.Blocks)
			}
		}
		// Sums: whatever is answered must be the named list's content hash.
		for k := 0; k < 2; k++ {
			named := target
			if k == 1 {
				named = perturb(rng, target, poolList)
			}
			code, got, raw := e.streamSum(stream, named)
			if code == http.StatusOK && got != sha(content(named)) {
				t.Fatalf("trial %d: sum answered %s for a list whose content hashes to %s (%s)", trial, got, sha(content(named)), raw)
			}
		}
		// The commit: a list and a sha256, either may be off.
		list := target
		if rng.IntN(2) == 0 {
			list = perturb(rng, target, poolList)
		}
		claimed := sha(content(target))
		if rng.IntN(4) == 0 {
			claimed = sha(content(list))
		}
		it := proto.CommitItem{Path: fmt.Sprintf("f%d", trial), Type: proto.TypeFile, Size: int64(len(content(list))),
			Mode: 0o644, MTimeNs: 1, SHA256: claimed, Blocks: list, Stream: stream}
		r := e.commit(it)[0]
		if r.Status == proto.StatusOK && claimed != sha(content(list)) {
			t.Fatalf("trial %d: a commit whose sha256 is not its list's content was accepted", trial)
		}
		if r.Status != proto.StatusOK && claimed == sha(content(list)) {
			t.Fatalf("trial %d: a right commit refused: %+v", trial, r)
		}
	}
}

// perturb returns l changed a little: two blocks swapped, one replaced, or one dropped.
func perturb(rng *mrand.Rand, l []proto.Block, pool []proto.Block) []proto.Block {
	out := append([]proto.Block(nil), l...)
	switch i := rng.IntN(len(out)); rng.IntN(3) {
	case 0:
		j := rng.IntN(len(out))
		out[i], out[j] = out[j], out[i]
	case 1:
		out[i] = pool[rng.IntN(len(pool))]
	default:
		if len(out) > 1 {
			out = append(out[:i], out[i+1:]...)
		}
	}
	return out
}

// streamCheckSeed seeds TestStreamsNeverVouchForAWrongList's trials.
var streamCheckSeed = 3

// gatedOpens holds every Open of a block store until the gate opens, and counts them.
type gatedOpens struct {
	BlockStore
	gate  chan struct{}
	opens atomic.Int32
}

func (g *gatedOpens) Open(hash string) (io.ReadSeekCloser, int64, error) {
	g.opens.Add(1)
	<-g.gate
	return g.BlockStore.Open(hash)
}

// A stream pushed out by newer ones (or expired) stops reading and hashing the blocks
// it had queued: maxStreams bounds the work of streams, not only their number (review,
// 2026-12-06: a client naming stored blocks in fresh streams, a ~100-byte POST of up to
// 8192 blocks each, started any number of pumps that could not be stopped).
func TestDroppedStreamsStopHashing(t *testing.T) {
	e := newEnv(t)
	const blocks = 64
	r := e.commitFile("v.bin", 0, randomContent(t, blocks<<10), 1<<10)
	if r.Status != proto.StatusOK {
		t.Fatalf("setup: %+v", r)
	}
	g := &gatedOpens{BlockStore: e.srv.streams.blocks, gate: make(chan struct{})}
	e.srv.streams.blocks = g
	const n, named = 3 * maxStreams, blocks - 1
	for i := 0; i < n; i++ {
		// Blocks 1.. at offset 0: the stream is off its base at once, so it hashes now.
		if code, _, raw := e.streamStored(fmt.Sprintf("p%d", i), 0, "v.bin", r.Entry.Seq, 1, named); code != http.StatusOK {
			t.Fatalf("stream %d: %d %s", i, code, raw)
		}
	}
	close(g.gate)
	// Let the pumps run until no block is opened any more.
	for last := int32(-1); last != g.opens.Load(); {
		last = g.opens.Load()
		time.Sleep(200 * time.Millisecond)
	}
	e.srv.streams.mu.Lock()
	kept := len(e.srv.streams.m)
	e.srv.streams.mu.Unlock()
	// The streams kept hash all they named; a dropped one at most what it had asked for
	// before it was dropped (verifyAhead opens, and the one in hand).
	if most := int32(kept*named + (n-kept)*(verifyAhead+1)); g.opens.Load() > most {
		t.Fatalf("%d blocks opened by %d streams (%d kept, %d blocks named each); want at most %d: dropped streams kept hashing",
			g.opens.Load(), n, kept, named, most)
	}
}

// A patch whose head and tail overflow int64 when added is refused with a 400 (review,
// 2026-12-06: it passed the "more than the base" check and the handler panicked).
func TestPatchHeadAndTailThatOverflowAreRefused(t *testing.T) {
	e := newEnv(t)
	base := randomContent(t, 4<<10)
	bh := e.putBlock(base)
	target := sha([]byte("x"))
	req, err := http.NewRequest("PUT", fmt.Sprintf("%s%s%s?base=%s&head=%d&tail=1", e.http.URL, proto.RouteBlocks, target, bh, int64(1<<63-1)), strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("PUT patch with head+tail overflowing: %v; want a 400 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("PUT patch with head+tail overflowing: %d; want 400", resp.StatusCode)
	}
}
