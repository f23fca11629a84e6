package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Put stores e durably (fsync'd) before returning. It returns duplicate=true,
// writing nothing, if e.ID is pending, dead-lettered, or finished less than
// DedupeTTL ago. It returns ErrFull when storing e would exceed a bound,
// ErrNoSpace (which wraps ErrFull) while disk space is short, an error
// wrapping ErrStorage after a storage failure, and
// an error wrapping ErrInvalidID for a bad ID. A zero e.EnqueuedAt is set to
// now. Concurrent Puts share fsyncs (pebble's group commit); concurrent Puts
// of the same ID store it once, the others return duplicate=true.
func (s *Spool) Put(ctx context.Context, e Entry) (duplicate bool, err error) {
	if err := checkID(e.ID); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.ops.Done()

	if pending, err := s.claim(ctx, e.ID); err != nil || pending {
		return pending, err
	}
	// Released in one critical section with the index update, so that the
	// bounds and waiting Puts of the same ID never see a gap.
	var (
		reserved  bool
		size      = int64(len(e.Payload))
		committed *item
		stored    *Entry // to cache with committed, if not nil
	)
	defer func() {
		s.mu.Lock()
		if reserved {
			s.reserved--
			s.reservedBytes -= size
		}
		if committed != nil {
			s.addLocked(committed)
			if stored != nil {
				s.cacheLocked(committed, stored)
			}
			s.signalLocked()
		}
		s.unclaimLocked(e.ID)
		s.mu.Unlock()
	}()

	now := s.now()
	// Every dead letter is indexed (deadItems), and holding the claim no
	// d/ record of this ID can appear or go but by the bounds' expiry
	// (then it may still be indexed for a moment: a duplicate, harmlessly).
	s.mu.Lock()
	_, dead := s.deadItems[e.ID]
	s.mu.Unlock()
	if dead {
		return true, nil
	}
	expiredMarker := false
	if v, err := s.get(dbKey(prefixSeen, e.ID)); err == nil {
		exp, err := parseExpiry(v)
		if err == nil && unixSeconds(now) < exp {
			return true, nil
		}
		expiredMarker = true // expired, or unreadable: accept the message rather than lose it
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("spool: checking dedupe marker: %w", err)
	}

	// Duplicates are answered above even without disk space: they are
	// stored already. A new entry needs the reserve (disk.go).
	if err := s.writable(true); err != nil {
		return false, err
	}
	s.mu.Lock()
	// Dead letters count toward the bounds (as in Full).
	if len(s.items)+len(s.deadItems)+s.reserved < s.maxMsgs && s.bytes+s.deadBytes+s.reservedBytes+size <= s.maxBytes {
		reserved = true
		s.reserved++
		s.reservedBytes += size
	}
	s.mu.Unlock()
	if !reserved {
		return false, ErrFull
	}

	if e.EnqueuedAt.IsZero() {
		e.EnqueuedAt = now
	}
	v, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("spool: encoding entry: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(dbKey(prefixQueue, e.ID), v, nil)
	if expiredMarker {
		b.Delete(dbKey(prefixSeen, e.ID), nil)
	}
	if err := s.commit(b, pebble.Sync); err != nil {
		return false, fmt.Errorf("spool: writing entry: %w", err)
	}
	committed = &item{id: e.ID, due: dueOf(e), enq: e.EnqueuedAt, size: size}
	if c, ok := asStored(e); ok {
		stored = &c
	}
	return false, nil
}

// claim makes the caller the only writer of a new record for id, waiting for
// a concurrent Put or Redrive of the same id. It returns pending=true (and no
// claim) if id is already pending.
func (s *Spool) claim(ctx context.Context, id string) (pending bool, err error) {
	for {
		s.mu.Lock()
		if _, ok := s.items[id]; ok {
			s.mu.Unlock()
			return true, nil
		}
		c, ok := s.claims[id]
		if !ok {
			s.claims[id] = make(chan struct{})
			s.mu.Unlock()
			return false, nil
		}
		s.mu.Unlock()
		// Bounded: each claim ends when its holder's write does.
		select {
		case <-c:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// unclaimLocked ends a claim taken by claim.
func (s *Spool) unclaimLocked(id string) {
	close(s.claims[id])
	delete(s.claims, id)
}
