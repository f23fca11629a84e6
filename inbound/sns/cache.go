package sns

import (
	"container/list"
	"crypto/rsa"
	"time"
)

// lru is a size-bounded least-recently-used cache of certificate public keys
// with per-entry expiry. Not safe for concurrent use: Verifier.mu guards it.
type lru struct {
	max   int
	order *list.List // front: most recently used; values are *lruEntry
	items map[string]*list.Element
}

type lruEntry struct {
	url     string
	pub     *rsa.PublicKey
	expires time.Time
	fetched time.Time
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// get returns the key for url unless absent or expired at now (an expired
// entry is dropped).
func (c *lru) get(url string, now time.Time) (*rsa.PublicKey, bool) {
	el, ok := c.items[url]
	if !ok {
		return nil, false
	}
	e := el.Value.(*lruEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, url)
		return nil, false
	}
	c.order.MoveToFront(el)
	return e.pub, true
}

// put stores pub for url until expires, evicting the least recently used
// entries beyond max.
func (c *lru) put(url string, pub *rsa.PublicKey, expires, now time.Time) {
	if el, ok := c.items[url]; ok {
		e := el.Value.(*lruEntry)
		e.pub, e.expires, e.fetched = pub, expires, now
		c.order.MoveToFront(el)
		return
	}
	c.items[url] = c.order.PushFront(&lruEntry{url: url, pub: pub, expires: expires, fetched: now})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry).url)
	}
}

// dropStale removes the entry for url if it was fetched at least minAge
// before now, and reports whether it did.
func (c *lru) dropStale(url string, now time.Time, minAge time.Duration) bool {
	el, ok := c.items[url]
	if !ok || now.Sub(el.Value.(*lruEntry).fetched) < minAge {
		return false
	}
	c.order.Remove(el)
	delete(c.items, url)
	return true
}

// len reports the number of entries (tests).
func (c *lru) len() int { return c.order.Len() }
