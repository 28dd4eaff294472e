package syncserver

import (
	"container/list"
	"crypto/sha256"
	"encoding"
	"hash"
	"sync"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Prefix checkpoints spare the commit of an edited large file the re-read of the part
// before the edit. SHA-256 runs front to back, so the state after the first k blocks
// of a list depends only on those blocks' bytes, which their hashes fix. While it
// hashes a list (a commit's verification, an upload stream), the server keeps that
// state every checkpointEvery bytes, under a key that names exactly the prefix (a hash
// chain over the blocks' hashes and sizes). Verifying a later list that starts with the
// same blocks (a new version of the file, edited after its head) resumes from the
// longest such prefix and hashes only the rest from the block store. The result is the
// same SHA-256 of the stored bytes of the listed blocks in list order, computed by the
// server; the client has no say in which prefix is used. Checkpoints live in memory,
// least recently used first out.
const maxCheckpoints = 4096

// checkpointEvery is how many bytes of a list go between two checkpoints (a variable
// for tests).
var checkpointEvery int64 = 32 << 20

// prefixKey names one prefix of a block list.
type prefixKey = proto.ListKey

type checkpoint struct {
	key   prefixKey
	state []byte
}

// checkpoints is the server's cache of SHA-256 states of list prefixes.
type checkpoints struct {
	mu  sync.Mutex
	m   map[prefixKey]*list.Element
	lru *list.List
}

func newCheckpoints() *checkpoints {
	return &checkpoints{m: map[prefixKey]*list.Element{}, lru: list.New()}
}

// put keeps h's state as that of the prefix k.
func (c *checkpoints) put(k prefixKey, h hash.Hash) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return
	}
	state, err := m.MarshalBinary()
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.m[k] = c.lru.PushFront(&checkpoint{key: k, state: state})
	for c.lru.Len() > maxCheckpoints {
		old := c.lru.Remove(c.lru.Back()).(*checkpoint)
		delete(c.m, old.key)
	}
}

// lookup returns the SHA-256 state kept for the prefix k, or nil.
func (c *checkpoints) lookup(k prefixKey) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*checkpoint).state
}

// resume returns the hash state after the longest prefix of blocks that has a
// checkpoint, and the prefix's length in blocks; nil, 0 when none has.
func (c *checkpoints) resume(blocks []proto.Block) (hash.Hash, int) {
	var k prefixKey
	keys := make([]prefixKey, len(blocks))
	for i, b := range blocks {
		k = k.Next(b)
		keys[i] = k
	}
	c.mu.Lock()
	var state []byte
	n := 0
	for i := len(keys) - 1; i >= 0; i-- {
		if el, ok := c.m[keys[i]]; ok {
			c.lru.MoveToFront(el)
			state, n = el.Value.(*checkpoint).state, i+1
			break
		}
	}
	c.mu.Unlock()
	if state == nil {
		return nil, 0
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, 0
	}
	return h, n
}

// prefixTracker follows a list being hashed block by block and keeps a checkpoint
// every checkpointEvery bytes.
type prefixTracker struct {
	cps   *checkpoints
	key   prefixKey
	since int64
}

// skip advances over blocks hashed before the tracker started (a resumed prefix).
func (t *prefixTracker) skip(blocks []proto.Block) {
	for _, b := range blocks {
		t.key = t.key.Next(b)
	}
}

// add records that b's bytes were just written to h.
func (t *prefixTracker) add(b proto.Block, h hash.Hash) {
	t.key = t.key.Next(b)
	t.since += b.Size
	if t.since >= checkpointEvery {
		t.since = 0
		t.cps.put(t.key, h)
	}
}
