package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// exec runs one statement and returns spool.ErrNotFound (wrapped) when it
// changed no row.
func (q *Queue) exec(op, id, sql string, args ...any) error {
	var n int64
	err := q.do(context.Background(), op, func(ctx context.Context, p *pgxpool.Pool) error {
		tag, err := p.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("pgqueue: %s %q: %w", op, id, err)
	}
	if n == 0 {
		return fmt.Errorf("pgqueue: %s %q: %w", op, id, spool.ErrNotFound)
	}
	return nil
}

// drop forgets a held claim.
func (q *Queue) drop(id string) {
	q.mu.Lock()
	delete(q.held, id)
	q.mu.Unlock()
}

// MarkSent records, committed and visible to every replica, that the
// destination set key was handed to SES as sesMessageID: whoever works on
// the row later does not send it again.
func (q *Queue) MarkSent(id, key, sesMessageID string) error {
	return q.exec("mark_sent", id, `
UPDATE relay_messages SET sent = sent || jsonb_build_object($2::text, $3::text)
WHERE id = $1 AND state = 'pending'`, id, key, sesMessageID)
}

// Retry records a failed attempt (attempts+1, next attempt at, last error)
// and gives up this replica's claim. A zero at means now. A row another
// replica has taken over meanwhile is left alone (spool.ErrNotFound).
func (q *Queue) Retry(id string, at time.Time, reason string) error {
	defer q.drop(id)
	return q.exec("retry", id, `
UPDATE relay_messages SET attempts = attempts + 1, next_attempt = $2::timestamptz, last_error = $3,
    due_at = COALESCE($2::timestamptz, now()), claimed_by = NULL
WHERE id = $1 AND state = 'pending' AND (claimed_by IS NULL OR claimed_by = $4)`,
		id, timeOrNil(at), reason, q.o.Replica)
}

// Release gives up this replica's claim on id without changing the entry
// (e.g. at shutdown): the row is due again at once for any replica, or at
// its next attempt. Errors are logged: a claim not released ends with its
// lease.
func (q *Queue) Release(id string) {
	defer q.drop(id)
	err := q.exec("release", id, `
UPDATE relay_messages SET claimed_by = NULL, due_at = GREATEST(COALESCE(next_attempt, now()), now())
WHERE id = $1 AND state = 'pending' AND claimed_by = $2`, id, q.o.Replica)
	if err != nil && !errors.Is(err, spool.ErrNotFound) {
		q.log.Warn("releasing claim failed; it ends with its lease", "id", id, "err", err)
	}
}

// Complete finishes id: its payload is dropped and the row stays as the
// de-duplication record for DedupeTTL.
func (q *Queue) Complete(id string) error {
	defer q.drop(id)
	return q.exec("complete", id, `
UPDATE relay_messages SET state = 'done', payload = NULL, size = 0, sent = '{}'::jsonb, claimed_by = NULL,
    expires_at = now() + make_interval(secs => $2)
WHERE id = $1 AND state = 'pending'`, id, q.o.DedupeTTL.Seconds())
}

// DeadLetter moves id to the dead letters with reason. A dead-lettered id
// stays a duplicate for Put until redriven.
func (q *Queue) DeadLetter(id, reason string) error {
	defer q.drop(id)
	return q.exec("dead_letter", id, `
UPDATE relay_messages SET state = 'dead', reason = $2, dead_at = now(), claimed_by = NULL
WHERE id = $1 AND state = 'pending'`, id, reason)
}

// DeadLetters returns up to limit dead letters (all when limit <= 0), the
// oldest first.
func (q *Queue) DeadLetters(limit int) ([]spool.DeadLetter, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	var out []spool.DeadLetter
	err := q.do(context.Background(), "dead_letters", func(ctx context.Context, p *pgxpool.Pool) error {
		out = out[:0]
		rows, err := p.Query(ctx, `
SELECT id, kind, topic_arn, payload, enqueued_at, attempts, last_error, sent, reason, dead_at
FROM relay_messages WHERE state = 'dead' ORDER BY dead_at, id LIMIT $1::bigint`, lim)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var dl spool.DeadLetter
			if err := rows.Scan(&dl.ID, &dl.Kind, &dl.TopicARN, &dl.Payload, &dl.EnqueuedAt, &dl.Attempts,
				&dl.LastError, &dl.Sent, &dl.Reason, &dl.DeadAt); err != nil {
				return err
			}
			if len(dl.Sent) == 0 {
				dl.Sent = nil
			}
			out = append(out, dl)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("pgqueue: listing dead letters: %w", err)
	}
	return out, nil
}

// Redrive moves dead letters back to pending, due now, attempts 0 (the
// sent-record is kept: destinations already sent are not sent again).
// Without ids it moves all. It returns how many moved; unknown ids are
// reported in an error wrapping spool.ErrNotFound after the others moved.
// Like the spool's, it ignores the bounds: dead letters count toward them.
func (q *Queue) Redrive(ids ...string) (int, error) {
	var moved []string
	err := q.do(context.Background(), "redrive", func(ctx context.Context, p *pgxpool.Pool) error {
		moved = moved[:0]
		rows, err := p.Query(ctx, `
UPDATE relay_messages SET state = 'pending', attempts = 0, next_attempt = NULL, due_at = now(),
    reason = '', dead_at = NULL, claimed_by = NULL
WHERE state = 'dead' AND ($1::text[] IS NULL OR id = ANY($1::text[]))
RETURNING id`, nilIfEmpty(ids))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			moved = append(moved, id)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("pgqueue: redrive: %w", err)
	}
	if len(moved) > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	var missing []string
	for _, id := range ids {
		if !slices.Contains(moved, id) && !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return len(moved), fmt.Errorf("%w: dead letters %s", spool.ErrNotFound, strings.Join(missing, ", "))
	}
	return len(moved), nil
}

func nilIfEmpty(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	return ids
}
