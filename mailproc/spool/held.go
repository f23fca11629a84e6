package spool

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// HeldDue is the NextAttempt of an entry held for an external queue (the
// SQS intake): the external queue owns the entry's pending state (its
// message is redelivered by SQS), the spool keeps only what the queue has
// none of — the sent record (MarkSent), the de-duplication marker
// (Complete) and the dead letter (DeadLetter). Next never hands out a held
// entry, before or after a restart: processing it from the spool as well
// would race the queue's redelivery to another replica. A redriven dead
// letter is due at once like any other (Redrive sets NextAttempt), and is
// then the spool's.
var HeldDue = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

var errNotHeld = errors.New("spool: not held")

// Held reports whether e is held for an external queue (see HeldDue).
func Held(e Entry) bool { return e.NextAttempt.Equal(HeldDue) }

// Pending returns the pending entry id (a copy, with its payload and sent
// record), or an error wrapping ErrNotFound when id is not pending (never
// stored, finished, dead-lettered).
func (s *Spool) Pending(id string) (Entry, error) {
	if err := checkID(id); err != nil {
		return Entry{}, err
	}
	if err := s.begin(); err != nil {
		return Entry{}, err
	}
	defer s.ops.Done()
	v, err := s.get(dbKey(prefixQueue, id))
	if err != nil {
		return Entry{}, fmt.Errorf("spool: pending %q: %w", id, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return Entry{}, fmt.Errorf("spool: pending %q: %w", id, err)
	}
	return e, nil
}

// DropHeld deletes held entries (see HeldDue) enqueued before cutoff, at
// most limit of them, skipping those for which busy reports true, and
// returns how many it deleted. A held entry is left behind when its
// external message was finished by another replica or moved to the
// queue's dead-letter queue; the caller chooses a cutoff well past the
// retry horizon (after it, a redelivery would be dead-lettered anyway).
// No de-duplication marker is written: a message that does come back is
// accepted again (its sent record is lost with the entry).
func (s *Spool) DropHeld(cutoff time.Time, limit int, busy func(id string) bool) (int, error) {
	s.mu.Lock()
	var ids []string
	for id, it := range s.items {
		if len(ids) >= limit {
			break
		}
		if it.due.Equal(HeldDue) && it.enq.Before(cutoff) && !it.leased {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if busy != nil && busy(id) {
			continue
		}
		err := s.dropHeld(id, false)
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, errNotHeld):
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	return n, nil
}

// Forget deletes the held entry id if nothing of it was sent yet (its sent
// record is empty): the external queue keeps its pending state, so the
// spool needs it no longer, and it does not linger if another replica
// finishes the message. An entry that is not held or has copies sent is
// left alone. Unknown ids are ignored.
func (s *Spool) Forget(id string) error {
	err := s.dropHeld(id, true)
	if errors.Is(err, ErrNotFound) || errors.Is(err, errNotHeld) {
		return nil
	}
	return err
}

// dropHeld deletes the pending entry id, durably, if it is held (and, with
// unsentOnly, has no sent record); otherwise it returns errNotHeld.
func (s *Spool) dropHeld(id string, unsentOnly bool) error {
	return s.transition(id, "dropping held entry", func(b *pebble.Batch, _ *Entry) error {
		// Still held? (It may have been finished and redriven since.)
		v, err := s.get(dbKey(prefixQueue, id))
		if err != nil {
			return err
		}
		e, err := decodeEntry(v)
		if err != nil || !Held(e) || (unsentOnly && len(e.Sent) > 0) {
			return errNotHeld
		}
		b.Delete(dbKey(prefixQueue, id), nil)
		return nil
	}, s.removeLocked)
}
