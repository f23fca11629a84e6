// Package pgqueue is the relay's queue of accepted notifications in
// PostgreSQL, shared by every replica pointed at the same database: the
// backend used instead of the embedded spool (mailproc/spool) when a
// database URL is configured. It offers the spool's methods (Put, Next,
// MarkSent, Retry, Release, Complete, DeadLetter, DeadLetters, Redrive,
// Stats, Full) with the same entries and errors, so inbound, mailproc and
// the admin API use either.
//
// One table, relay_messages (mailproc/statedb/migrations), one row per SNS
// MessageId. Its primary key is the de-duplication point of all replicas:
// Put inserts, and a row already there (pending, dead, or finished less
// than DedupeTTL ago) makes it a duplicate. Put returns only after the
// commit (synchronous_commit on).
//
// Workers claim due rows with FOR UPDATE SKIP LOCKED, writing their replica
// id and a lease: the row's due_at moves to the end of the lease, which a
// heartbeat extends while the replica holds it. A replica that dies stops
// extending it, and when the lease ends the row is due again and any
// replica takes it over. MarkSent records each SES send in the row itself
// (sent, a JSON object) before the work goes on, so a replica taking the
// row over skips what was already sent; the remaining window (SES
// accepted, record not yet committed) is one message per crash, as with
// the spool.
//
// Stats and Full answer from a snapshot refreshed in the background, so
// metrics scrapes and readiness probes never wait on the database.
//
// The queue also keeps the SQS intake's state (held rows, see held.go:
// Pending, Forget, DropHeld, as the spool does) and the table of live
// replicas (relay_replicas, see replicas.go: Peers), which the heartbeat
// keeps and the sending pace divides the SES rate by.
package pgqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
)

// Defaults for Options fields left zero.
const (
	DefaultLease         = 30 * time.Second
	DefaultPollInterval  = 500 * time.Millisecond
	DefaultStatsInterval = 2 * time.Second
	pruneInterval        = 10 * time.Second
	pruneBatch           = 1000
)

// Options configures a Queue. Zero values mean the defaults; the bounds
// and the de-duplication time default to the spool's.
type Options struct {
	// Replica identifies this process in claims (default host name, pid
	// and a random suffix). Two live processes must not share one.
	Replica string
	// Lease is how long a claim lasts without a heartbeat: the bound on
	// how long the work of a replica that died waits before another takes
	// it over (default 30 s). The heartbeat renews it every Lease/3. A
	// replica whose last heartbeat is older than Lease no longer counts
	// among the live ones (Peers).
	Lease time.Duration
	// PollInterval is how often an idle Next looks for due work that
	// other replicas accepted (default 500 ms); a Put on this replica
	// wakes it at once.
	PollInterval time.Duration
	// StatsInterval is how often the snapshot behind Stats and Full is
	// refreshed (default 2 s).
	StatsInterval time.Duration

	MaxMessages      int           // bound on pending + dead rows (default spool.DefaultMaxMessages)
	MaxBytes         int64         // bound on their payload bytes (default spool.DefaultMaxBytes)
	DedupeTTL        time.Duration // how long a finished MessageId stays a duplicate (default 24 h)
	MaxDeadLetterAge time.Duration // dead letters older than this are deleted (default 14 days)

	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Lease, DefaultLease)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.StatsInterval, DefaultStatsInterval)
	def(&o.DedupeTTL, spool.DefaultDedupeTTL)
	def(&o.MaxDeadLetterAge, spool.DefaultMaxDeadLetterAge)
	if o.MaxMessages <= 0 {
		o.MaxMessages = spool.DefaultMaxMessages
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = spool.DefaultMaxBytes
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		o.Replica = fmt.Sprintf("%s-%d-%x", host, os.Getpid(), time.Now().UnixNano()&0xffffff)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Queue is the PostgreSQL queue of one replica. Safe for concurrent use.
type Queue struct {
	db  *statedb.DB
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	held    map[string]struct{} // rows this replica claimed and holds
	snap    spool.Stats         // last refreshed snapshot
	snapErr error               // error of the last refresh (nil: fresh)
	added   int                 // rows Put since the snapshot
	addedB  int64               // their bytes
	closed  bool

	wake chan struct{} // a Put on this replica: work may be due
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// New returns the queue of this replica on db (migrated) and starts its
// heartbeat, snapshot and pruning loops. It does not wait for the database.
func New(db *statedb.DB, o Options) *Queue {
	o = o.withDefaults()
	q := &Queue{db: db, o: o, log: o.Logger.With("replica", o.Replica),
		held: map[string]struct{}{}, wake: make(chan struct{}, 1), done: make(chan struct{}),
		snapErr: errors.New("pgqueue: not yet in touch with the database")}
	q.loop(o.Lease/3, q.heartbeat)
	q.loop(o.StatsInterval, q.refresh)
	q.loop(pruneInterval, q.prune)
	return q
}

// Replica returns the id this queue claims rows with.
func (q *Queue) Replica() string { return q.o.Replica }

// do runs one statement through the database's breaker and timeout.
func (q *Queue) do(ctx context.Context, op string, fn func(context.Context, *pgxpool.Pool) error) error {
	return q.db.Do(ctx, op, fn)
}

// checkID applies the spool's rule for entry IDs.
func checkID(id string) error {
	if id == "" || len(id) > spool.MaxIDLength || strings.ContainsRune(id, 0) {
		return fmt.Errorf("%w: %q", spool.ErrInvalidID, id)
	}
	return nil
}

// putSQL inserts a pending row, or takes over a finished one whose
// de-duplication time has passed; it returns no row for a duplicate. The
// conflict is resolved on the latest committed version of the row, so
// concurrent Puts of one id on any replicas store it once.
const putSQL = `
INSERT INTO relay_messages AS m (id, state, kind, topic_arn, payload, size, enqueued_at,
    attempts, next_attempt, last_error, sent, due_at)
VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8::timestamptz, $9, $10, COALESCE($8::timestamptz, now()))
ON CONFLICT (id) DO UPDATE SET state = 'pending', kind = EXCLUDED.kind, topic_arn = EXCLUDED.topic_arn,
    payload = EXCLUDED.payload, size = EXCLUDED.size, enqueued_at = EXCLUDED.enqueued_at,
    attempts = EXCLUDED.attempts, next_attempt = EXCLUDED.next_attempt, last_error = EXCLUDED.last_error,
    sent = EXCLUDED.sent, due_at = EXCLUDED.due_at, claimed_by = NULL, reason = '',
    dead_at = NULL, expires_at = NULL
  WHERE m.state = 'done' AND m.expires_at <= now()
RETURNING id`

// Put stores e, committed, before returning. It returns duplicate=true,
// writing nothing, if e.ID is pending, dead-lettered or finished less than
// DedupeTTL ago on any replica. Errors: spool.ErrInvalidID (final),
// spool.ErrFull at a bound, spool.ErrClosed, and transient database errors
// (unavailable, timeout: the caller answers 503). A zero EnqueuedAt is set
// to now.
func (q *Queue) Put(ctx context.Context, e spool.Entry) (duplicate bool, err error) {
	if err := checkID(e.ID); err != nil {
		return false, err
	}
	size := int64(len(e.Payload))
	q.mu.Lock()
	closed, full := q.closed, q.fullLocked(size)
	q.mu.Unlock()
	if closed {
		return false, spool.ErrClosed
	}
	if full {
		return false, spool.ErrFull
	}
	if e.EnqueuedAt.IsZero() {
		e.EnqueuedAt = time.Now()
	}
	sent, err := json.Marshal(nonNil(e.Sent))
	if err != nil {
		return false, fmt.Errorf("pgqueue: encoding sent-record: %w", err)
	}
	payload := e.Payload
	if payload == nil {
		payload = []byte{}
	}
	err = q.do(ctx, "put", func(ctx context.Context, p *pgxpool.Pool) error {
		var id string
		err := p.QueryRow(ctx, putSQL, e.ID, e.Kind, e.TopicARN, payload, size, e.EnqueuedAt,
			e.Attempts, timeOrNil(e.NextAttempt), e.LastError, sent).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			duplicate = true
			return nil
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("pgqueue: storing %q: %w", e.ID, err)
	}
	if !duplicate {
		q.mu.Lock()
		q.added++
		q.addedB += size
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return duplicate, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// claimSQL claims the row due first (oldest first among equals), skipping
// rows other transactions hold, and leases it to $1 for $2 seconds.
const claimSQL = `
UPDATE relay_messages m SET claimed_by = $1, due_at = now() + make_interval(secs => $2)
FROM (SELECT id FROM relay_messages
      WHERE state = 'pending' AND due_at <= now()
      ORDER BY due_at, enqueued_at LIMIT 1 FOR UPDATE SKIP LOCKED) c
WHERE m.id = c.id
RETURNING m.id, m.kind, m.topic_arn, m.payload, m.enqueued_at, m.attempts, m.next_attempt, m.last_error, m.sent`

// Next waits until a row is due and claims it for this replica (a lease,
// renewed by the heartbeat until Retry, Release, Complete or DeadLetter).
// A row whose lease ended (its replica died) is due again. It returns
// ctx.Err() when ctx ends and spool.ErrClosed after Close; database
// failures are logged and waited out.
func (q *Queue) Next(ctx context.Context) (spool.Entry, error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	failing := false
	for {
		if err := ctx.Err(); err != nil {
			return spool.Entry{}, err
		}
		select {
		case <-q.done:
			return spool.Entry{}, spool.ErrClosed
		default:
		}
		e, ok, err := q.claim(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return spool.Entry{}, ctx.Err()
		case err != nil:
			if !failing {
				q.log.Warn("claiming work failed; retrying", "err", err)
			}
			failing = true
		case ok:
			if failing {
				q.log.Info("claiming work again")
			}
			return e, nil
		default:
			failing = false
		}
		timer.Reset(q.o.PollInterval)
		select {
		case <-q.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		case <-ctx.Done():
		case <-q.done:
		}
	}
}

// claim claims one due row, if any.
func (q *Queue) claim(ctx context.Context) (e spool.Entry, ok bool, err error) {
	err = q.do(ctx, "claim", func(ctx context.Context, p *pgxpool.Pool) error {
		var (
			next *time.Time
			sent []byte
		)
		err := p.QueryRow(ctx, claimSQL, q.o.Replica, q.o.Lease.Seconds()).Scan(
			&e.ID, &e.Kind, &e.TopicARN, &e.Payload, &e.EnqueuedAt, &e.Attempts, &next, &e.LastError, &sent)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if next != nil {
			e.NextAttempt = *next
		}
		if err := json.Unmarshal(sent, &e.Sent); err != nil {
			return fmt.Errorf("pgqueue: sent-record of %q: %w", e.ID, err)
		}
		if len(e.Sent) == 0 {
			e.Sent = nil
		}
		ok = true
		return nil
	})
	if ok && err == nil {
		q.mu.Lock()
		q.held[e.ID] = struct{}{}
		q.mu.Unlock()
	}
	return e, ok && err == nil, err
}
