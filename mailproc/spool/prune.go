package spool

import (
	"errors"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pruneLoop removes expired dedupe markers every pruneInterval until Close.
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
		// Bounded: at most pruneBatches batches per tick.
		for range pruneBatches {
			n, err := s.pruneOnce(pruneBatch)
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
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, err
	}
	return n, nil
}
