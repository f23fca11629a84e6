package spool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// DeadLetter moves id to the dead letters with reason and the current time,
// durably. A dead-lettered ID stays a duplicate for Put until redriven.
//
// Over a dead-letter bound (Options.MaxDeadLetters, MaxDeadLetterBytes,
// MaxDeadLetterAge) the oldest dead letters are deleted before it returns.
func (s *Spool) DeadLetter(id, reason string) error {
	var dl DeadLetter
	err := s.transition(id, "dead-lettering", func(b *pebble.Batch, cached *Entry) (err error) {
		dl, err = move(s, b, pendingSpace, id, cached, deadSpace, id, func(e Entry) DeadLetter {
			return DeadLetter{Entry: e, Reason: reason, DeadAt: s.now()}
		})
		return err
	}, func(it *item) {
		s.removeLocked(it)
		s.addDeadLocked(&deadItem{id: id, at: dl.DeadAt, size: int64(len(dl.Payload))})
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	over := s.deadOverLocked(s.now())
	s.mu.Unlock()
	if over {
		// The dead letter is stored: a failure here only delays expiry
		// to the next pass of pruneLoop.
		if _, err := s.expireDead(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("expiring dead letters", "err", err)
		}
	}
	return nil
}

// buryCorrupt moves an undecodable pending record to the dead letters, with
// the raw record as payload, so that it is neither lost nor retried forever.
func (s *Spool) buryCorrupt(id string) error {
	dlID := id
	if checkID(id) != nil {
		dlID = fmt.Sprintf("corrupt-%x", id)
	}
	b := s.db.NewBatch()
	defer b.Close()
	dl, err := move(s, b, corruptSpace, id, nil, deadSpace, dlID, func(raw []byte) DeadLetter {
		s.log.Error("undecodable pending entry, moving to dead letters", "id", id)
		return DeadLetter{Entry: Entry{ID: dlID, Payload: raw}, Reason: "spool_corrupt_entry", DeadAt: s.now()}
	})
	if err != nil {
		return err
	}
	if err := s.commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("spool: moving corrupt entry %q: %w", id, err)
	}
	s.mu.Lock()
	if it := s.items[id]; it != nil {
		s.removeLocked(it)
	}
	s.addDeadLocked(&deadItem{id: dlID, at: dl.DeadAt, size: int64(len(dl.Payload))})
	s.mu.Unlock()
	return nil
}

// DeadLetters returns up to limit dead letters (all when limit <= 0), the
// oldest (by DeadAt) first.
func (s *Spool) DeadLetters(limit int) ([]DeadLetter, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	older := func(a, b DeadLetter) bool {
		if !a.DeadAt.Equal(b.DeadAt) {
			return a.DeadAt.Before(b.DeadAt)
		}
		return a.ID < b.ID
	}
	// l is kept sorted and, with a limit, no longer than limit, so memory
	// stays bounded however many dead letters there are.
	var l []DeadLetter
	err := s.scan(prefixDead, "listing dead letters", func(iter *pebble.Iterator) error {
		v, err := iter.ValueAndErr()
		if err != nil {
			return fmt.Errorf("spool: reading dead letter: %w", err)
		}
		dl, err := decodeDeadLetter(v)
		if err != nil {
			s.log.Error("skipping undecodable dead letter", "key", string(iter.Key()), "err", err)
			return nil
		}
		i := sort.Search(len(l), func(i int) bool { return older(dl, l[i]) })
		if limit > 0 && i >= limit {
			return nil
		}
		l = slices.Insert(l, i, dl)
		if limit > 0 && len(l) > limit {
			l = l[:limit]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Redrive moves dead letters back to pending with Attempts=0, due now (Sent
// is kept, so destinations already sent are not sent again). Without ids it
// moves all. It returns how many were moved; unknown ids are reported
// together in an error wrapping ErrNotFound, after the known ones are moved.
//
// Redrive never loses a message: it ignores the MaxMessages/MaxBytes bounds.
// Dead letters count toward them like pending entries, so moving one back
// does not change the total; with the bounds lowered since, the spool may
// stay over them (Full reports true and Put returns ErrFull until enough
// entries finish).
func (s *Spool) Redrive(ids ...string) (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.ops.Done()
	s.redriveMu.Lock()
	defer s.redriveMu.Unlock()

	if len(ids) == 0 {
		var err error
		if ids, err = s.deadIDs(); err != nil {
			return 0, err
		}
	} else {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	n := 0
	var missing []string
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), redriveBatch)]
		ids = ids[len(chunk):]
		moved, miss, err := s.redriveChunk(chunk)
		n += moved
		missing = append(missing, miss...)
		if err != nil {
			return n, err
		}
	}
	if len(missing) > 0 {
		return n, fmt.Errorf("%w: dead letters %s", ErrNotFound, strings.Join(missing, ", "))
	}
	return n, nil
}

func (s *Spool) deadIDs() ([]string, error) {
	var ids []string
	err := s.scan(prefixDead, "listing dead letters", func(iter *pebble.Iterator) error {
		ids = append(ids, string(iter.Key()[len(prefixDead):]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// redriveChunk moves the dead letters ids (sorted, distinct) in one write.
func (s *Spool) redriveChunk(ids []string) (moved int, missing []string, rerr error) {
	var claimed []string
	var items []*item
	defer func() {
		s.mu.Lock()
		if rerr == nil {
			for _, it := range items {
				s.addLocked(it)
				s.removeDeadLocked(it.id)
			}
			if len(items) > 0 {
				s.signalLocked()
			}
		}
		for _, id := range claimed {
			s.unclaimLocked(id)
		}
		s.mu.Unlock()
	}()

	now := s.now()
	b := s.db.NewBatch()
	defer b.Close()
	for _, id := range ids {
		if checkID(id) != nil {
			missing = append(missing, id)
			continue
		}
		// Redrives are serialized and a Put holds one claim at most, so
		// waiting here cannot deadlock.
		pending, err := s.claim(context.Background(), id)
		if err != nil {
			return 0, missing, err
		}
		if pending && s.settle(id) {
			// A DeadLetter of id was finishing (its write is visible to
			// readers before the index forgets the entry); now it is done.
			if pending, err = s.claim(context.Background(), id); err != nil {
				return 0, missing, err
			}
		}
		if pending {
			// A dead-lettered id cannot be pending: Put sees d/ as a duplicate.
			missing = append(missing, id)
			continue
		}
		claimed = append(claimed, id)
		e, err := move(s, b, deadSpace, id, nil, pendingSpace, id, func(dl DeadLetter) Entry {
			e := dl.Entry
			e.ID = id
			e.Attempts = 0
			e.NextAttempt = now
			return e
		})
		if errors.Is(err, ErrNotFound) {
			missing = append(missing, id)
			continue
		} else if err != nil {
			return 0, missing, err
		}
		items = append(items, &item{id: id, due: dueOf(e), enq: e.EnqueuedAt, size: int64(len(e.Payload))})
	}
	if len(items) == 0 {
		return 0, missing, nil
	}
	if err := s.commit(b, pebble.Sync); err != nil {
		items = nil
		return 0, missing, fmt.Errorf("spool: redriving: %w", err)
	}
	return len(items), missing, nil
}

// settle waits for an operation in progress on the pending entry id (its
// item lock) and reports whether the entry has left the index since.
func (s *Spool) settle(id string) bool {
	s.mu.Lock()
	it := s.items[id]
	s.mu.Unlock()
	if it == nil {
		return true
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return it.removed
}
