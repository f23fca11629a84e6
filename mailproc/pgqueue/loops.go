package pgqueue

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// loop runs fn every interval (and once at once) until Close.
func (q *Queue) loop(every time.Duration, fn func()) {
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			fn()
			select {
			case <-t.C:
			case <-q.done:
				return
			}
		}
	}()
}

// heartbeat records this replica as live and extends the lease of every
// row it holds.
func (q *Queue) heartbeat() {
	q.beat()
	q.mu.Lock()
	ids := make([]string, 0, len(q.held))
	for id := range q.held {
		ids = append(ids, id)
	}
	q.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	err := q.do(context.Background(), "heartbeat", func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `
UPDATE relay_messages SET due_at = now() + make_interval(secs => $2)
WHERE state = 'pending' AND claimed_by = $1 AND id = ANY($3::text[])`, q.o.Replica, q.o.Lease.Seconds(), ids)
		return err
	})
	if err != nil {
		q.log.Warn("extending leases failed; held work may be taken over when they end", "held", len(ids), "err", err)
	}
}

// refresh takes the snapshot behind Stats and Full.
func (q *Queue) refresh() {
	var st spool.Stats
	err := q.do(context.Background(), "stats", func(ctx context.Context, p *pgxpool.Pool) error {
		var oldest, oldestDead *time.Time
		err := p.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE state = 'pending'), COALESCE(sum(size) FILTER (WHERE state = 'pending'), 0),
       min(enqueued_at) FILTER (WHERE state = 'pending'),
       count(*) FILTER (WHERE state = 'dead'), COALESCE(sum(size) FILTER (WHERE state = 'dead'), 0),
       min(dead_at) FILTER (WHERE state = 'dead')
FROM relay_messages WHERE state IN ('pending', 'dead')`).Scan(
			&st.Messages, &st.Bytes, &oldest, &st.DeadLetters, &st.DeadLetterBytes, &oldestDead)
		if oldest != nil {
			st.Oldest = *oldest
		}
		if oldestDead != nil {
			st.OldestDeadLetter = *oldestDead
		}
		return err
	})
	q.mu.Lock()
	defer q.mu.Unlock()
	q.snapErr = err
	if err == nil {
		q.snap, q.added, q.addedB = st, 0, 0
	}
}

// prune deletes finished rows past their de-duplication time and dead
// letters past MaxDeadLetterAge, a bounded batch per pass.
func (q *Queue) prune() {
	err := q.do(context.Background(), "prune", func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `
DELETE FROM relay_messages WHERE id IN (
  (SELECT id FROM relay_messages WHERE state = 'done' AND expires_at <= now() LIMIT $1)
  UNION ALL
  (SELECT id FROM relay_messages WHERE state = 'dead' AND dead_at <= now() - make_interval(secs => $2) LIMIT $1))`,
			pruneBatch, q.o.MaxDeadLetterAge.Seconds())
		if err != nil {
			return err
		}
		return q.pruneReplicas(ctx, p)
	})
	if err != nil {
		q.log.Warn("pruning finished rows failed", "err", err)
	}
}

// Stats returns the last snapshot of the queue (all replicas), never
// waiting on the database.
func (q *Queue) Stats() spool.Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.snap
	st.Messages += q.added
	st.Bytes += q.addedB
	return st
}

// Full reports whether the queue is at a bound (pending and dead rows of
// all replicas, from the snapshot plus this replica's Puts since). Across
// replicas the bound is approximate by what the others accepted within
// one StatsInterval.
func (q *Queue) Full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fullLocked(0)
}

func (q *Queue) fullLocked(size int64) bool {
	n := q.snap.Messages + q.snap.DeadLetters + q.added
	b := q.snap.Bytes + q.snap.DeadLetterBytes + q.addedB
	return n >= q.o.MaxMessages || b+size > q.o.MaxBytes
}

// Available is false while the database's breaker is open: the worker
// pool then takes no new work, so that no copy is sent whose record could
// not be written.
func (q *Queue) Available() bool { return q.db.Available() }

// Err returns why the database is not usable now (the breaker is open, or
// the last snapshot failed), or nil. It never waits on the database: for
// readiness.
func (q *Queue) Err() error {
	if !q.db.Available() {
		return errUnavailable
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.snapErr
}

var errUnavailable = spoolWrap("database unavailable (circuit breaker open)")

type spoolWrap string

func (e spoolWrap) Error() string { return "pgqueue: " + string(e) }

// Close stops the loops, releases every claim this replica holds, so
// other replicas take the work over at once instead of after the lease,
// and removes the replica from the live ones (Peers).
// Next returns spool.ErrClosed from then on. The database pool is the
// caller's to close.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.done)
	ids := make([]string, 0, len(q.held))
	for id := range q.held {
		ids = append(ids, id)
	}
	q.mu.Unlock()
	q.wg.Wait()
	for _, id := range ids {
		q.Release(id)
	}
	q.leave()
	return nil
}
