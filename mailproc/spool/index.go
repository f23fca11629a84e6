package spool

import (
	"container/heap"
	"sync"
	"time"
)

// item is the in-memory index record of one pending entry. The entry
// itself, payload included, is kept only while it fits in the entry cache
// (cache.go); otherwise Next reads it from disk.
type item struct {
	id   string    // fixed
	enq  time.Time // EnqueuedAt; fixed
	size int64     // payload bytes; fixed

	// Fields below are guarded by Spool.mu (see the lock order there).
	due     time.Time // NextAttempt, or EnqueuedAt when NextAttempt is zero
	leased  bool
	removed bool // no longer pending (completed, dead-lettered)
	dueIdx  int  // index in Spool.due, -1 while leased
	ageIdx  int  // index in Spool.age
	// entry is the cached entry as stored (nil: not cached, read the
	// store), entrySize what it is charged in the cache (cache.go).
	entry     *Entry
	entrySize int64

	// mu serializes the read-modify-write of the stored entry (transition:
	// MarkSent, Retry, Complete, DeadLetter) so that concurrent updates are
	// not lost. It is taken before Spool.mu, never while holding it.
	mu sync.Mutex
}

func dueOf(e Entry) time.Time {
	if e.NextAttempt.IsZero() {
		return e.EnqueuedAt
	}
	return e.NextAttempt
}

// dueHeap holds the pending entries that are not leased, the one due first
// (then the oldest) on top.
type dueHeap = itemHeap[byDue]

// ageHeap holds all pending entries, leased or not, the oldest enqueued on
// top, so that Stats can report the oldest entry cheaply.
type ageHeap = itemHeap[byAge]

// An order sorts the items of an itemHeap and names the item field that
// holds an item's position in that heap (-1 when not in it).
type order interface {
	less(a, b *item) bool
	pos(*item) *int
}

type byDue struct{}

func (byDue) less(a, b *item) bool {
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return byAge{}.less(a, b)
}
func (byDue) pos(it *item) *int { return &it.dueIdx }

type byAge struct{}

func (byAge) less(a, b *item) bool {
	if !a.enq.Equal(b.enq) {
		return a.enq.Before(b.enq)
	}
	return a.id < b.id
}
func (byAge) pos(it *item) *int { return &it.ageIdx }

// itemHeap is a heap of items in order O that keeps each item's position
// up to date. It implements container/heap.Interface.
type itemHeap[O order] []*item

func (h itemHeap[O]) Len() int           { return len(h) }
func (h itemHeap[O]) Less(i, j int) bool { var o O; return o.less(h[i], h[j]) }
func (h itemHeap[O]) Swap(i, j int) {
	var o O
	h[i], h[j] = h[j], h[i]
	*o.pos(h[i]) = i
	*o.pos(h[j]) = j
}
func (h *itemHeap[O]) Push(x any) {
	var o O
	it := x.(*item)
	*o.pos(it) = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap[O]) Pop() any {
	var o O
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	*o.pos(it) = -1
	*h = old[:n-1]
	return it
}

// addLocked adds a pending, unleased entry to the index.
func (s *Spool) addLocked(it *item) {
	s.items[it.id] = it
	s.bytes += it.size
	heap.Push(&s.due, it)
	heap.Push(&s.age, it)
}

// removeLocked removes a pending entry from the index.
func (s *Spool) removeLocked(it *item) {
	if it.removed {
		return
	}
	it.removed = true
	s.uncacheLocked(it)
	delete(s.items, it.id)
	s.bytes -= it.size
	if it.dueIdx >= 0 {
		heap.Remove(&s.due, it.dueIdx)
	}
	heap.Remove(&s.age, it.ageIdx)
}

// signalLocked wakes Next callers waiting for an entry.
func (s *Spool) signalLocked() {
	if s.waiters > 0 {
		close(s.wake)
		s.wake = make(chan struct{})
	}
}

// releaseLocked drops the lease on a pending item, making it due again.
func (s *Spool) releaseLocked(it *item) {
	if it.removed || !it.leased {
		return
	}
	it.leased = false
	heap.Push(&s.due, it)
	s.signalLocked()
}

// deadItem is the in-memory index record of one dead letter: enough to
// enforce the dead-letter bounds (count, bytes, age) without reading them.
type deadItem struct {
	id   string
	at   time.Time // DeadAt
	size int64     // payload bytes
	idx  int       // index in Spool.deadAge
}

// deadHeap holds the dead letters, the oldest (by DeadAt, then ID) on top:
// the first to expire. It implements container/heap.Interface.
type deadHeap []*deadItem

func (h deadHeap) Len() int { return len(h) }
func (h deadHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h deadHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *deadHeap) Push(x any) {
	d := x.(*deadItem)
	d.idx = len(*h)
	*h = append(*h, d)
}
func (h *deadHeap) Pop() any {
	old := *h
	n := len(old)
	d := old[n-1]
	old[n-1] = nil
	d.idx = -1
	*h = old[:n-1]
	return d
}

// addDeadLocked adds (or replaces) a dead letter in the index.
func (s *Spool) addDeadLocked(d *deadItem) {
	s.removeDeadLocked(d.id)
	s.deadItems[d.id] = d
	s.deadBytes += d.size
	heap.Push(&s.deadAge, d)
}

// removeDeadLocked removes a dead letter from the index, if there.
func (s *Spool) removeDeadLocked(id string) {
	d := s.deadItems[id]
	if d == nil {
		return
	}
	delete(s.deadItems, id)
	s.deadBytes -= d.size
	heap.Remove(&s.deadAge, d.idx)
}

// deadOverLocked reports whether the dead letters exceed a bound at now.
func (s *Spool) deadOverLocked(now time.Time) bool {
	if len(s.deadAge) == 0 {
		return false
	}
	return len(s.deadItems) > s.maxDead || s.deadBytes > s.maxDeadBytes || s.deadAge[0].at.Before(now.Add(-s.maxDeadAge))
}

// popDead pops the oldest dead letter of a copy of Spool.deadAge without
// touching the items' positions (which belong to the real heap).
func popDead(h *deadHeap) {
	c := *h
	n := len(c) - 1
	c[0] = c[n]
	c = c[:n]
	// Sift down by the heap order, without Swap (which updates idx).
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && c.Less(l, m) {
			m = l
		}
		if r < n && c.Less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		c[i], c[m] = c[m], c[i]
		i = m
	}
	*h = c
}
