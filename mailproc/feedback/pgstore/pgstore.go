// Package pgstore is the feedback.Store shared by every replica: the
// bounce pauses, complaints, disabled aliases and daily send counts in
// PostgreSQL, the relay's --database-url. Its tables are created by the
// relay's numbered migrations (mailproc/statedb/migrations, one version
// table and one advisory lock for all the shared state, applied by
// `mailrelay migrate` or at start); every call goes through statedb's
// pool, breaker and timeout, timed as service="postgres".
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
)

// Store is a feedback.Store in PostgreSQL. Safe for concurrent use.
type Store struct{ db *statedb.DB }

var _ feedback.Store = (*Store)(nil)

// New returns the store on db, whose migrations are applied. The pool is
// the caller's: Close leaves it open.
func New(db *statedb.DB) *Store { return &Store{db: db} }

// Close implements feedback.Store; the pool is closed by its owner.
func (s *Store) Close() error { return nil }

// do runs fn through the database's breaker and timeout as operation
// "feedback_"+op.
func (s *Store) do(ctx context.Context, op string, fn func(context.Context, *pgxpool.Pool) error) error {
	if err := s.db.Do(ctx, "feedback_"+op, fn); err != nil {
		return fmt.Errorf("feedback store: %s: %w", op, err)
	}
	return nil
}

// Pause implements feedback.Store.
func (s *Store) Pause(ctx context.Context, p feedback.Pause) error {
	return s.do(ctx, "pause", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `
INSERT INTO feedback_paused_destinations AS d (address, until_at, kind, since_at, reason) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (address) DO UPDATE SET until_at = EXCLUDED.until_at, kind = EXCLUDED.kind,
    since_at = EXCLUDED.since_at, reason = EXCLUDED.reason
WHERE EXCLUDED.until_at > d.until_at`, p.Address, p.Until, p.Kind, p.Since, p.Reason)
		return err
	})
}

// Paused implements feedback.Store.
func (s *Store) Paused(ctx context.Context, address string, now time.Time) (feedback.Pause, bool, error) {
	var p feedback.Pause
	ok := false
	err := s.do(ctx, "paused", func(ctx context.Context, pool *pgxpool.Pool) error {
		err := pool.QueryRow(ctx, `
SELECT address, until_at, kind, since_at, reason FROM feedback_paused_destinations
WHERE address = $1 AND until_at > $2`, address, now).Scan(&p.Address, &p.Until, &p.Kind, &p.Since, &p.Reason)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		ok = err == nil
		return err
	})
	if err != nil || !ok {
		return feedback.Pause{}, false, err
	}
	p.Until, p.Since = p.Until.UTC(), p.Since.UTC()
	return p, true, nil
}

// Unpause implements feedback.Store.
func (s *Store) Unpause(ctx context.Context, address string) (bool, error) {
	return s.deleted(ctx, "unpause", `DELETE FROM feedback_paused_destinations WHERE address = $1`, address)
}

// deleted runs a DELETE of one key and reports whether it found a row.
func (s *Store) deleted(ctx context.Context, op, sql, key string) (bool, error) {
	var n int64
	err := s.do(ctx, op, func(ctx context.Context, pool *pgxpool.Pool) error {
		tag, err := pool.Exec(ctx, sql, key)
		n = tag.RowsAffected()
		return err
	})
	return n > 0, err
}

// ListPaused implements feedback.Store.
func (s *Store) ListPaused(ctx context.Context, now time.Time) ([]feedback.Pause, error) {
	var out []feedback.Pause
	err := s.do(ctx, "list_paused", func(ctx context.Context, pool *pgxpool.Pool) error {
		out = out[:0]
		rows, err := pool.Query(ctx, `
SELECT address, until_at, kind, since_at, reason FROM feedback_paused_destinations
WHERE until_at > $1 ORDER BY until_at DESC, address`, now)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p feedback.Pause
			if err := rows.Scan(&p.Address, &p.Until, &p.Kind, &p.Since, &p.Reason); err != nil {
				return err
			}
			p.Until, p.Since = p.Until.UTC(), p.Since.UTC()
			out = append(out, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddComplaint implements feedback.Store: the insert and the count in one
// transaction, so the count includes this complaint and those other
// replicas committed before.
func (s *Store) AddComplaint(ctx context.Context, alias, feedbackID string, at, since time.Time) (int, error) {
	var n int
	err := s.do(ctx, "add_complaint", func(ctx context.Context, pool *pgxpool.Pool) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, `
INSERT INTO feedback_complaints (alias, feedback_id, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			alias, feedbackID, at); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM feedback_complaints WHERE alias = $1 AND at >= $2`,
			alias, since).Scan(&n); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	return n, err
}

// Complaints implements feedback.Store.
func (s *Store) Complaints(ctx context.Context, alias string, since time.Time) (int, error) {
	var n int
	err := s.do(ctx, "complaints", func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `SELECT count(*) FROM feedback_complaints WHERE alias = $1 AND at >= $2`,
			alias, since).Scan(&n)
	})
	return n, err
}

// DisableAlias implements feedback.Store.
func (s *Store) DisableAlias(ctx context.Context, alias string, at time.Time, reason string) error {
	return s.do(ctx, "disable_alias", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `
INSERT INTO feedback_disabled_aliases (alias, at, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, alias, at, reason)
		return err
	})
}

// AliasDisabled implements feedback.Store.
func (s *Store) AliasDisabled(ctx context.Context, alias string) (bool, error) {
	var d bool
	err := s.do(ctx, "alias_disabled", func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM feedback_disabled_aliases WHERE alias = $1)`, alias).Scan(&d)
	})
	return d, err
}

// EnableAlias implements feedback.Store.
func (s *Store) EnableAlias(ctx context.Context, alias string) (bool, error) {
	return s.deleted(ctx, "enable_alias", `DELETE FROM feedback_disabled_aliases WHERE alias = $1`, alias)
}

// AddSends implements feedback.Store: one atomic upsert, so replicas
// counting the same destination at once all add up.
func (s *Store) AddSends(ctx context.Context, address, day string, n int) (int, error) {
	var count int
	err := s.do(ctx, "add_sends", func(ctx context.Context, pool *pgxpool.Pool) error {
		return pool.QueryRow(ctx, `
INSERT INTO feedback_daily_sends AS d (address, day, count) VALUES ($1, $2, $3)
ON CONFLICT (address, day) DO UPDATE SET count = d.count + EXCLUDED.count
RETURNING count`, address, day, n).Scan(&count)
	})
	return count, err
}

// Sends implements feedback.Store.
func (s *Store) Sends(ctx context.Context, address, day string) (int, error) {
	var n int
	err := s.do(ctx, "sends", func(ctx context.Context, pool *pgxpool.Pool) error {
		err := pool.QueryRow(ctx, `SELECT count FROM feedback_daily_sends WHERE address = $1 AND day = $2`,
			address, day).Scan(&n)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	return n, err
}

// Load implements feedback.Store: one UNION ALL statement, so one
// snapshot of all four tables.
func (s *Store) Load(ctx context.Context, now, since time.Time, day string) (feedback.State, error) {
	var st feedback.State
	err := s.do(ctx, "load", func(ctx context.Context, pool *pgxpool.Pool) error {
		st = feedback.NewState() // a retry starts afresh
		rows, err := pool.Query(ctx, `
SELECT 0, alias, to_timestamp(0), 0::bigint FROM feedback_disabled_aliases
UNION ALL SELECT 1, alias, max(at), 0 FROM feedback_complaints WHERE at >= $1 GROUP BY alias
UNION ALL SELECT 2, address, until_at, 0 FROM feedback_paused_destinations WHERE until_at > $2
UNION ALL SELECT 3, address, to_timestamp(0), count FROM feedback_daily_sends WHERE $3 <> '' AND day = $3`,
			since, now, day)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var kind int
			var key string
			var t time.Time
			var n int64
			if err := rows.Scan(&kind, &key, &t, &n); err != nil {
				return err
			}
			if err := st.Add(kind, key, t.UTC(), int(n)); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	return st, err
}
