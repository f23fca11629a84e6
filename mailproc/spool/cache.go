package spool

import (
	"maps"
	"slices"
	"time"
	"unicode/utf8"
)

// DefaultCacheBytes is the default of Options.CacheBytes.
const DefaultCacheBytes = 32 << 20

// cacheOverhead is what an entry is charged in the cache beyond its
// payload and strings (the Entry, its pointer, the map header).
const cacheOverhead = 256

// The entry cache keeps the decoded entry of pending items (item.entry)
// from their Put or last rewrite, so that Next and the rewrites of a
// worker (MarkSent, Retry, DeadLetter) neither read pebble nor decode JSON
// in the common case. It holds at most Spool.cacheMax bytes (cacheSize);
// an entry that does not fit is read from pebble as before. Held entries
// (HeldDue) are not cached: they wait for their external queue, maybe for
// long, and Next never hands them out.
//
// It is never staler than the store: an entry is cached only after the
// commit that wrote it, under Spool.mu; a transition takes the entry out
// of the cache (takeCachedLocked) before it commits a change, so that a
// concurrent Next reads the store meanwhile, and puts the new one back
// after its commit (cacheLocked), still holding the item's lock; every
// path that ends a pending entry removes it from the index, and with it
// from the cache (removeLocked). The index rebuilt at Open starts without
// cached entries.
//
// Cached entries are owned by the cache: what is handed out (Next) is a
// copy with its own Payload and Sent map.

// cacheSize is the number of bytes e is charged in the cache.
func cacheSize(e *Entry) int64 {
	n := len(e.Payload) + len(e.ID) + len(e.Kind) + len(e.TopicARN) + len(e.LastError) + cacheOverhead
	for k, v := range e.Sent {
		n += len(k) + len(v) + 32
	}
	return int64(n)
}

// cacheLocked caches e (owned by the cache from now on) as the entry of
// it, replacing what was cached, if it fits in the budget. e must be the
// entry as just committed to the store.
func (s *Spool) cacheLocked(it *item, e *Entry) {
	s.uncacheLocked(it)
	if it.removed || Held(*e) {
		return
	}
	n := cacheSize(e)
	if s.cacheBytes+n > s.cacheMax {
		return
	}
	it.entry, it.entrySize = e, n
	s.cacheBytes += n
}

// uncacheLocked drops the cached entry of it, if any.
func (s *Spool) uncacheLocked(it *item) {
	if it.entry == nil {
		return
	}
	s.cacheBytes -= it.entrySize
	it.entry, it.entrySize = nil, 0
}

// takeCachedLocked removes the cached entry of it from the cache and
// returns it (nil if none), now owned by the caller.
func (s *Spool) takeCachedLocked(it *item) *Entry {
	e := it.entry
	s.uncacheLocked(it)
	return e
}

// cachedCopyLocked returns a copy of the cached entry of it that shares
// nothing mutable with the cache.
func (s *Spool) cachedCopyLocked(it *item) (Entry, bool) {
	if it.entry == nil {
		return Entry{}, false
	}
	e := *it.entry
	e.Payload = slices.Clone(e.Payload)
	e.Sent = maps.Clone(e.Sent)
	return e, true
}

// asStored returns a copy of e as decoding its stored JSON would give it,
// sharing nothing mutable with e, or false if it cannot be cached (see
// canonical).
func asStored(e Entry) (Entry, bool) {
	if e.Payload != nil {
		e.Payload = append([]byte{}, e.Payload...)
	}
	e.Sent = maps.Clone(e.Sent)
	return e, canonical(&e)
}

// canonical changes e, in place, into what decoding its stored JSON gives:
// the times go through their text form, as in JSON (no monotonic reading,
// the location decoding leaves), and an empty Sent (omitted) becomes nil.
// It reports false if the JSON encoding would change e in a way not
// reproduced here (strings that are not valid UTF-8, which encoding/json
// replaces): such an entry is not cached.
func canonical(e *Entry) bool {
	if !utf8.ValidString(e.ID) || !utf8.ValidString(e.Kind) || !utf8.ValidString(e.TopicARN) || !utf8.ValidString(e.LastError) {
		return false
	}
	for k, v := range e.Sent {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	var ok1, ok2 bool
	e.EnqueuedAt, ok1 = textTime(e.EnqueuedAt)
	e.NextAttempt, ok2 = textTime(e.NextAttempt)
	if len(e.Sent) == 0 {
		e.Sent = nil
	}
	return ok1 && ok2
}

// textTime is t after a round trip through its RFC 3339 text form.
func textTime(t time.Time) (time.Time, bool) {
	b, err := t.MarshalText()
	if err != nil {
		return time.Time{}, false
	}
	var u time.Time
	if err := u.UnmarshalText(b); err != nil {
		return time.Time{}, false
	}
	return u, true
}
