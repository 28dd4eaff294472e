package kubeauth

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// digest keys the cache: the SHA-256 of a token, so that the cache never holds a token
// a heap dump could leak.
type digest = [sha256.Size]byte

// answer is a cached review outcome: the agent identity, and the refusal (nil if
// accepted).
type answer struct {
	agent string
	err   error
}

type cacheEntry struct {
	key     digest
	answer  answer
	expires time.Time
}

// cache remembers review outcomes until they expire, holding at most max entries; when
// full, the oldest entry goes first. Entries are never refreshed on use: an accepted token
// must be re-reviewed after the TTL even if it is used all the time, so a revoked token
// stops working within that TTL.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[digest]*list.Element
	order   *list.List // front: newest
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[digest]*list.Element), order: list.New()}
}

// get returns the unexpired answer for key.
func (c *cache) get(key digest, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.entries, key)
		return answer{}, false
	}
	return e.answer, true
}

// put stores a for key until expires, evicting the oldest entries beyond max.
func (c *cache) put(key digest, a answer, expires time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.order.Remove(el)
		delete(c.entries, key)
	}
	for c.order.Len() >= c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
	c.entries[key] = c.order.PushFront(&cacheEntry{key: key, answer: a, expires: expires})
}

// len returns how many entries the cache holds, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
