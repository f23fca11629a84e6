package spool

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Next waits until an entry is due and not leased, leases it (in memory
// only) and returns it with its payload. The entry due first is returned
// first; among equally due ones the oldest. It returns ctx.Err() when ctx
// ends and ErrClosed when the spool is closed. After a storage failure it
// hands out nothing (it waits for ctx or Close).
func (s *Spool) Next(ctx context.Context) (Entry, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// Each iteration either returns or waits for a wake-up, the retry timer
	// or the end of ctx or of the spool.
	for {
		if err := ctx.Err(); err != nil {
			return Entry{}, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Entry{}, ErrClosed
		}
		var wait time.Duration = -1
		// After a storage failure nothing is handed out: its outcome could
		// not be recorded, and a send would be repeated.
		if len(s.due) > 0 && s.failed.Load() == nil && s.live {
			top := s.due[0]
			if d := top.due.Sub(s.now()); d > 0 {
				wait = min(d, maxWait)
			} else {
				heap.Pop(&s.due)
				top.leased = true
				if e, ok := s.cachedCopyLocked(top); ok {
					s.mu.Unlock()
					return e, nil
				}
				s.ops.Add(1)
				s.mu.Unlock()
				e, err := s.readLeased(top)
				s.ops.Done()
				if errors.Is(err, errSkip) {
					continue
				}
				return e, err
			}
		}
		s.waiters++
		wake := s.wake
		s.mu.Unlock()

		var timerC <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}
		select {
		case <-wake:
		case <-timerC:
		case <-ctx.Done():
		case <-s.done:
		}
		if timer != nil {
			timer.Stop()
		}
		s.mu.Lock()
		s.waiters--
		s.mu.Unlock()
	}
}

// errSkip tells Next that the leased item vanished and it should look again.
var errSkip = errors.New("skip")

// readLeased reads the entry of a just-leased item. On failure the lease is
// dropped.
func (s *Spool) readLeased(it *item) (Entry, error) {
	v, err := s.get(dbKey(prefixQueue, it.id))
	if err == nil {
		var e Entry
		e, err = decodeEntry(v)
		if err == nil {
			return e, nil
		}
		if berr := s.buryCorrupt(it.id); berr != nil {
			s.log.Error("moving corrupt entry to dead letters", "id", it.id, "err", berr)
		}
		return Entry{}, errSkip
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, ErrNotFound) {
		// Cannot happen unless the index and the store disagree: trust the store.
		s.log.Error("pending entry missing from store, dropping from index", "id", it.id)
		s.removeLocked(it)
		return Entry{}, errSkip
	}
	s.releaseLocked(it)
	return Entry{}, fmt.Errorf("spool: reading entry %q: %w", it.id, err)
}

// MarkSent durably records in Entry.Sent that the destination set key was
// handed to SES as sesMessageID, so a retry or restart does not send it again.
func (s *Spool) MarkSent(id, key, sesMessageID string) error {
	return s.rewrite(id, func(e *Entry) {
		if e.Sent == nil {
			e.Sent = map[string]string{}
		}
		e.Sent[key] = sesMessageID
	}, nil)
}

// Retry records a failed attempt: Attempts++, NextAttempt=at,
// LastError=reason, durably, and releases the lease. A zero at means now.
func (s *Spool) Retry(id string, at time.Time, reason string) error {
	return s.rewrite(id, func(e *Entry) {
		e.Attempts++
		e.NextAttempt = at
		e.LastError = reason
	}, func(it *item, e Entry) {
		if it.removed {
			return
		}
		it.due = dueOf(e)
		if it.leased {
			s.releaseLocked(it)
		} else {
			heap.Fix(&s.due, it.dueIdx)
			s.signalLocked()
		}
	})
}

// Release drops the lease on id without changing the entry, e.g. at
// shutdown. Unknown or unleased ids are ignored.
func (s *Spool) Release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.items[id]; it != nil {
		s.releaseLocked(it)
	}
}

// Complete finishes id: the entry is deleted and a dedupe marker expiring
// after DedupeTTL is written, in one atomic write that is not synced (see
// "Durability" on Spool): the next synced commit (any Put, MarkSent, ...)
// makes it durable. A crash before that brings the entry back; its sent-
// record is durable, so the worker finds every copy sent and completes it
// again without sending anything.
func (s *Spool) Complete(id string) error {
	return s.transitionSync(id, "completing", pebble.NoSync, func(b *pebble.Batch, _ *Entry) error {
		exp := expiryAt(s.now(), s.dedupeTTL)
		b.Delete(dbKey(prefixQueue, id), nil)
		b.Set(dbKey(prefixSeen, id), encodeExpiry(exp), nil)
		b.Set(expiryKey(exp, id), nil, nil)
		return nil
	}, s.removeLocked)
}
