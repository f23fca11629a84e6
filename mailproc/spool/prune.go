package spool

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pruneLoop removes expired dedupe markers and dead letters over their
// bounds every pruneInterval until Close.
func (s *Spool) pruneLoop() {
	defer s.bg.Done()
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if _, err := s.expireDead(); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, errNotOpen) {
			s.log.Error("expiring dead letters", "err", err)
		}
		// Bounded: at most pruneBatches batches per tick.
		for range pruneBatches {
			n, err := s.pruneOnce(pruneBatch)
			if errors.Is(err, errNotOpen) {
				break
			}
			if err != nil {
				s.log.Error("pruning dedupe markers", "err", err)
				break
			}
			if n < pruneBatch {
				break
			}
			select {
			case <-s.done:
				return
			default:
			}
		}
	}
}

// pruneOnce removes up to limit expired dedupe markers and returns how many
// expiry index entries it removed.
func (s *Spool) pruneOnce(limit int) (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.ops.Done()
	now := unixSeconds(s.now())
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixExpiry), UpperBound: expiryKey(now+1, "")})
	if err != nil {
		return 0, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	for ok := iter.First(); ok && n < limit; ok = iter.Next() {
		n++
		b.Delete(slices.Clone(iter.Key()), nil)
		_, id, err := parseExpiryKey(iter.Key())
		if err != nil {
			continue
		}
		// The marker may have been rewritten since (finished again after
		// expiring): only delete it if it has expired itself.
		sk := dbKey(prefixSeen, id)
		v, err := s.get(sk)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			iter.Close()
			return 0, err
		}
		if exp, err := parseExpiry(v); err != nil || exp <= now {
			b.Delete(sk, nil)
		}
	}
	if err := iter.Close(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	// Losing these deletes in a crash is harmless: the next pass redoes them.
	if err := s.commit(b, pebble.NoSync); err != nil {
		return 0, err
	}
	return n, nil
}

// expireDead deletes the oldest dead letters while they exceed a bound
// (count, payload bytes, age), at most pruneBatches*pruneBatch per call, and
// returns how many it deleted. Like the pruning of markers the deletes are
// not fsync'd: a crash may bring some back, and the next pass expires them
// again. It holds redriveMu, so that no Redrive moves an ID it deletes.
func (s *Spool) expireDead() (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.ops.Done()
	return s.expireDeadNow()
}

// expireDeadNow is expireDead without begin (for load).
func (s *Spool) expireDeadNow() (int, error) {
	s.redriveMu.Lock()
	defer s.redriveMu.Unlock()
	total := 0
	defer func() {
		if total > 0 {
			if s.onExpired != nil {
				s.onExpired(total)
			}
			s.log.Info("dead letters expired (over a dead-letter bound)", "count", total,
				"max_messages", s.maxDead, "max_bytes", s.maxDeadBytes, "max_age", s.maxDeadAge)
		}
	}()
	for range pruneBatches {
		now := s.now()
		s.mu.Lock()
		// Pop the victims from a copy of the index state: the index only
		// follows once the deletes are committed.
		count, bytes := len(s.deadItems), s.deadBytes
		var victims []*deadItem
		h := slices.Clone(s.deadAge)
		for len(h) > 0 && len(victims) < pruneBatch {
			top := h[0]
			if count <= s.maxDead && bytes <= s.maxDeadBytes && !top.at.Before(now.Add(-s.maxDeadAge)) {
				break
			}
			victims = append(victims, top)
			count--
			bytes -= top.size
			popDead(&h)
		}
		s.mu.Unlock()
		if len(victims) == 0 {
			return total, nil
		}
		b := s.db.NewBatch()
		for _, d := range victims {
			b.Delete(dbKey(prefixDead, d.id), nil)
		}
		err := s.commit(b, pebble.NoSync)
		b.Close()
		if err != nil {
			return total, fmt.Errorf("spool: expiring dead letters: %w", err)
		}
		s.mu.Lock()
		for _, d := range victims {
			if s.deadItems[d.id] == d {
				s.removeDeadLocked(d.id)
			}
		}
		s.deadExpired += uint64(len(victims))
		s.mu.Unlock()
		total += len(victims)
	}
	return total, nil
}
