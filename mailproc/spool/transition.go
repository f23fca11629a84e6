package spool

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// A space is a key space holding records of type R: its key prefix, the
// name of its records in errors and how to decode them.
type space[R any] struct {
	prefix string
	name   string
	decode func([]byte) (R, error)
}

var (
	pendingSpace = space[Entry]{prefixQueue, "entry", decodeEntry}
	deadSpace    = space[DeadLetter]{prefixDead, "dead letter", decodeDeadLetter}
	// corruptSpace reads pending records without decoding them, to move
	// the undecodable ones to the dead letters.
	corruptSpace = space[[]byte]{prefixQueue, "corrupt entry", func(v []byte) ([]byte, error) { return v, nil }}
)

// move is the one read → decode → change → encode sequence of a stored
// record: it reads the record id of from, decodes it, lets change make the
// new record, encodes that and stages in b its write as toID in to, deleting
// the old key unless it is the same (a rewrite in place). With cached not
// nil (the record as stored, taken from the entry cache and so the
// caller's), it neither reads nor decodes. It returns the new record.
// Nothing is staged on error. Committing b, and so choosing the durability
// of the write, is the caller's: transition for a pending entry,
// redriveChunk for a chunk of dead letters, buryCorrupt.
func move[F, T any](s *Spool, b *pebble.Batch, from space[F], id string, cached *F, to space[T], toID string, change func(F) T) (T, error) {
	var zero T
	var old F
	if cached != nil {
		old = *cached
	} else {
		v, err := s.get(dbKey(from.prefix, id))
		if err != nil {
			return zero, fmt.Errorf("spool: reading %s %q: %w", from.name, id, err)
		}
		if old, err = from.decode(v); err != nil {
			return zero, fmt.Errorf("spool: %s %q: %w", from.name, id, err)
		}
	}
	rec := change(old)
	v, err := json.Marshal(rec)
	if err != nil {
		return zero, fmt.Errorf("spool: encoding %s: %w", to.name, err)
	}
	if from.prefix != to.prefix || id != toID {
		b.Delete(dbKey(from.prefix, id), nil)
	}
	b.Set(dbKey(to.prefix, toID), v, nil)
	return rec, nil
}

// transition changes the state of the pending entry id durably: holding the
// entry's lock (so that concurrent changes of one entry are serialized and
// none is lost), stage adds the writes to a batch, which is committed with
// pebble.Sync, so the change is on disk before the caller is told it
// happened; then index, if not nil, updates the in-memory index under s.mu,
// still holding the entry's lock (settle relies on that). The cached entry
// (cache.go) leaves the cache before the commit, so that no reader takes
// it for the store's once the store has changed: stage is given it (nil if
// there was none), to use as the stored entry and to keep or drop; index
// may cache the new one (rewrite). verb names the
// change in the error of a failed commit. It returns an error wrapping
// ErrNotFound if id is not pending.
func (s *Spool) transition(id, verb string, stage func(b *pebble.Batch, cached *Entry) error, index func(*item)) error {
	return s.transitionSync(id, verb, pebble.Sync, stage, index)
}

// transitionSync is transition with the commit's durability chosen by the
// caller: pebble.NoSync only for a change whose loss in a crash is safe
// (Complete).
func (s *Spool) transitionSync(id, verb string, wo *pebble.WriteOptions, stage func(b *pebble.Batch, cached *Entry) error, index func(*item)) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	it, err := s.lockItem(id)
	if err != nil {
		return err
	}
	defer it.mu.Unlock()
	s.mu.Lock()
	cached := s.takeCachedLocked(it)
	s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := stage(b, cached); err != nil {
		return err
	}
	if err := s.commit(b, wo); err != nil {
		return fmt.Errorf("spool: %s %q: %w", verb, id, err)
	}
	if index != nil {
		s.mu.Lock()
		index(it)
		s.mu.Unlock()
	}
	return nil
}

// rewrite is transition for a change of a pending entry in place (MarkSent,
// Retry): change edits the stored entry (the cached one, which no one else
// holds then, or one decoded from the store); index, if not nil, is given
// the updated entry. The updated entry is cached after the commit.
func (s *Spool) rewrite(id string, change func(*Entry), index func(*item, Entry)) error {
	var updated Entry
	var stored *Entry // updated as stored, to cache (nil: not cacheable)
	stage := func(b *pebble.Batch, cached *Entry) (err error) {
		updated, err = move(s, b, pendingSpace, id, cached, pendingSpace, id, func(e Entry) Entry {
			change(&e)
			return e
		})
		if c := updated; err == nil && canonical(&c) {
			stored = &c
		}
		return err
	}
	return s.transition(id, "writing entry", stage, func(it *item) {
		if index != nil {
			index(it, updated)
		}
		if stored != nil {
			s.cacheLocked(it, stored)
		}
	})
}

// lockItem returns the pending item for id with its mu locked, or
// ErrNotFound.
func (s *Spool) lockItem(id string) (*item, error) {
	s.mu.Lock()
	it := s.items[id]
	s.mu.Unlock()
	if it == nil {
		return nil, fmt.Errorf("%w: pending %q", ErrNotFound, id)
	}
	it.mu.Lock()
	s.mu.Lock()
	removed := it.removed
	s.mu.Unlock()
	if removed {
		it.mu.Unlock()
		return nil, fmt.Errorf("%w: pending %q", ErrNotFound, id)
	}
	return it, nil
}
