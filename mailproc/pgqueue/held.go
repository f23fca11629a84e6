package pgqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// Held rows are the queue's side of an external queue (the SQS intake,
// inbound/sqsintake): Put with NextAttempt = spool.HeldDue stores a
// pending row whose due_at is that far-off date, so Next never claims it
// on any replica; the SQS message is its pending state. The row keeps
// what SQS does not: the sent record (MarkSent), the de-duplication marker
// (Complete) and the dead letter (DeadLetter). None of these look at
// claimed_by: a held row is never claimed, and the replica that received
// the SQS message settles it. A replica that dies holding the message
// leaves the row as it is; SQS redelivers the message to any replica,
// whose Put finds the row (a duplicate) and resumes it through Pending,
// with the sent record. A redriven dead letter is due at once and is then
// the queue's own, as in the spool.

// pendingSQL reads a pending row.
const pendingSQL = `
SELECT id, kind, topic_arn, payload, enqueued_at, attempts, next_attempt, last_error, sent
FROM relay_messages WHERE id = $1 AND state = 'pending'`

// Pending returns the pending entry id (with its payload and sent record),
// or an error wrapping spool.ErrNotFound when id is not pending (never
// stored, finished, dead-lettered).
func (q *Queue) Pending(id string) (spool.Entry, error) {
	if err := checkID(id); err != nil {
		return spool.Entry{}, err
	}
	var e spool.Entry
	found := false
	err := q.do(context.Background(), "pending", func(ctx context.Context, p *pgxpool.Pool) error {
		var (
			next *time.Time
			sent []byte
		)
		err := p.QueryRow(ctx, pendingSQL, id).Scan(&e.ID, &e.Kind, &e.TopicARN, &e.Payload, &e.EnqueuedAt,
			&e.Attempts, &next, &e.LastError, &sent)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		if next != nil {
			e.NextAttempt = *next
		}
		if err := json.Unmarshal(sent, &e.Sent); err != nil {
			return fmt.Errorf("pgqueue: sent-record of %q: %w", id, err)
		}
		if len(e.Sent) == 0 {
			e.Sent = nil
		}
		return nil
	})
	if err != nil {
		return spool.Entry{}, fmt.Errorf("pgqueue: pending %q: %w", id, err)
	}
	if !found {
		return spool.Entry{}, fmt.Errorf("pgqueue: pending %q: %w", id, spool.ErrNotFound)
	}
	return e, nil
}

// Forget deletes the held row id if nothing of it was sent yet (its sent
// record is empty): the external queue keeps its pending state. A row
// that is not held or has copies sent is left alone; unknown ids are
// ignored.
func (q *Queue) Forget(id string) error {
	err := q.do(context.Background(), "forget", func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `
DELETE FROM relay_messages
WHERE id = $1 AND state = 'pending' AND next_attempt = $2 AND sent = '{}'::jsonb`, id, spool.HeldDue)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgqueue: forget %q: %w", id, err)
	}
	return nil
}

// DropHeld deletes held rows enqueued before cutoff, at most limit of
// them, skipping those for which busy reports true (this replica works on
// them), and returns how many it deleted. See spool.Spool.DropHeld: the
// cutoff is far past the retry horizon, so a row left behind is one whose
// message another replica finished or SQS moved to its dead-letter queue.
func (q *Queue) DropHeld(cutoff time.Time, limit int, busy func(id string) bool) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var ids []string
	err := q.do(context.Background(), "drop_held_list", func(ctx context.Context, p *pgxpool.Pool) error {
		ids = ids[:0]
		rows, err := p.Query(ctx, `
SELECT id FROM relay_messages
WHERE state = 'pending' AND due_at = $1 AND next_attempt = $1 AND enqueued_at < $2
ORDER BY enqueued_at LIMIT $3`, spool.HeldDue, cutoff, limit)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgqueue: listing held rows: %w", err)
	}
	keep := ids[:0]
	for _, id := range ids {
		if busy == nil || !busy(id) {
			keep = append(keep, id)
		}
	}
	if len(keep) == 0 {
		return 0, nil
	}
	var n int64
	err = q.do(context.Background(), "drop_held", func(ctx context.Context, p *pgxpool.Pool) error {
		tag, err := p.Exec(ctx, `
DELETE FROM relay_messages
WHERE id = ANY($1::text[]) AND state = 'pending' AND next_attempt = $2 AND enqueued_at < $3`, keep, spool.HeldDue, cutoff)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgqueue: dropping held rows: %w", err)
	}
	return int(n), nil
}
