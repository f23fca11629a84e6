// Package sqlitestore is the embedded feedback.Store: an SQLite database
// (modernc.org/sqlite, pure Go) in the relay's data directory, its schema
// applied by goose migrations recorded in their own version table
// (goose_feedback), so that other state in the same database keeps its
// own.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// VersionTable is goose's version table of these migrations.
const VersionTable = "goose_feedback"

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a feedback.Store in SQLite.
type Store struct{ db *sql.DB }

var _ feedback.Store = (*Store)(nil)

// Open opens (creating) the database file at path and applies the
// migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	// A rollback journal, not WAL: WAL maps a -shm file even to read, and
	// on a full disk (the spool's neighbour) that fails, so the relay could
	// not start to answer 503 and wait for space. With a rollback journal,
	// reads need no file of their own; only writes fail while it is full.
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(DELETE)&_pragma=synchronous(FULL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("feedback store: %w", err)
	}
	db.SetMaxOpenConns(1) // one writer; the state is small
	if err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Migrate applies the migrations to db.
func Migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub,
		goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("feedback store migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("feedback store migrations: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func ns(t time.Time) int64 { return t.UnixNano() }

// Pause implements feedback.Store.
func (s *Store) Pause(ctx context.Context, p feedback.Pause) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO feedback_paused_destinations (address, until_ns, kind, since_ns, reason) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (address) DO UPDATE SET until_ns = excluded.until_ns, kind = excluded.kind, since_ns = excluded.since_ns, reason = excluded.reason
WHERE excluded.until_ns > feedback_paused_destinations.until_ns`,
		p.Address, ns(p.Until), p.Kind, ns(p.Since), p.Reason)
	return wrap("pause", err)
}

// Paused implements feedback.Store.
func (s *Store) Paused(ctx context.Context, address string, now time.Time) (feedback.Pause, bool, error) {
	var p feedback.Pause
	var until, since int64
	err := s.db.QueryRowContext(ctx, `SELECT address, until_ns, kind, since_ns, reason FROM feedback_paused_destinations WHERE address = ? AND until_ns > ?`,
		address, ns(now)).Scan(&p.Address, &until, &p.Kind, &since, &p.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return feedback.Pause{}, false, nil
	}
	if err != nil {
		return feedback.Pause{}, false, wrap("paused", err)
	}
	p.Until, p.Since = time.Unix(0, until).UTC(), time.Unix(0, since).UTC()
	return p, true, nil
}

// Unpause implements feedback.Store.
func (s *Store) Unpause(ctx context.Context, address string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM feedback_paused_destinations WHERE address = ?`, address)
	if err != nil {
		return false, wrap("unpause", err)
	}
	n, err := res.RowsAffected()
	return n > 0, wrap("unpause", err)
}

// ListPaused implements feedback.Store.
func (s *Store) ListPaused(ctx context.Context, now time.Time) ([]feedback.Pause, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT address, until_ns, kind, since_ns, reason FROM feedback_paused_destinations WHERE until_ns > ? ORDER BY until_ns DESC, address`, ns(now))
	if err != nil {
		return nil, wrap("list paused", err)
	}
	defer rows.Close()
	var out []feedback.Pause
	for rows.Next() {
		var p feedback.Pause
		var until, since int64
		if err := rows.Scan(&p.Address, &until, &p.Kind, &since, &p.Reason); err != nil {
			return nil, wrap("list paused", err)
		}
		p.Until, p.Since = time.Unix(0, until).UTC(), time.Unix(0, since).UTC()
		out = append(out, p)
	}
	return out, wrap("list paused", rows.Err())
}

// AddComplaint implements feedback.Store.
func (s *Store) AddComplaint(ctx context.Context, alias, feedbackID string, at, since time.Time) (int, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO feedback_complaints (alias, feedback_id, at_ns) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		alias, feedbackID, ns(at)); err != nil {
		return 0, wrap("add complaint", err)
	}
	return s.Complaints(ctx, alias, since)
}

// Complaints implements feedback.Store.
func (s *Store) Complaints(ctx context.Context, alias string, since time.Time) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM feedback_complaints WHERE alias = ? AND at_ns >= ?`, alias, ns(since)).Scan(&n)
	return n, wrap("complaints", err)
}

// DisableAlias implements feedback.Store.
func (s *Store) DisableAlias(ctx context.Context, alias string, at time.Time, reason string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO feedback_disabled_aliases (alias, at_ns, reason) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, alias, ns(at), reason)
	return wrap("disable alias", err)
}

// AliasDisabled implements feedback.Store.
func (s *Store) AliasDisabled(ctx context.Context, alias string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM feedback_disabled_aliases WHERE alias = ?`, alias).Scan(&n)
	return n > 0, wrap("alias disabled", err)
}

// EnableAlias implements feedback.Store.
func (s *Store) EnableAlias(ctx context.Context, alias string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM feedback_disabled_aliases WHERE alias = ?`, alias)
	if err != nil {
		return false, wrap("enable alias", err)
	}
	n, err := res.RowsAffected()
	return n > 0, wrap("enable alias", err)
}

// AddSends implements feedback.Store.
func (s *Store) AddSends(ctx context.Context, address, day string, n int) (int, error) {
	var count int
	err := s.db.QueryRowContext(ctx, `
INSERT INTO feedback_daily_sends (address, day, count) VALUES (?, ?, ?)
ON CONFLICT (address, day) DO UPDATE SET count = count + excluded.count
RETURNING count`, address, day, n).Scan(&count)
	return count, wrap("add sends", err)
}

// Sends implements feedback.Store.
func (s *Store) Sends(ctx context.Context, address, day string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count FROM feedback_daily_sends WHERE address = ? AND day = ?`, address, day).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, wrap("sends", err)
}

// Load implements feedback.Store: one UNION ALL statement, so one read
// transaction sees all four tables at once.
func (s *Store) Load(ctx context.Context, now, since time.Time, day string) (feedback.State, error) {
	st := feedback.NewState()
	rows, err := s.db.QueryContext(ctx, `
SELECT 0, alias, 0, 0 FROM feedback_disabled_aliases
UNION ALL SELECT 1, alias, max(at_ns), 0 FROM feedback_complaints WHERE at_ns >= ? GROUP BY alias
UNION ALL SELECT 2, address, until_ns, 0 FROM feedback_paused_destinations WHERE until_ns > ?
UNION ALL SELECT 3, address, 0, count FROM feedback_daily_sends WHERE ? <> '' AND day = ?`,
		ns(since), ns(now), day, day)
	if err != nil {
		return st, wrap("load", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, n int
		var key string
		var t int64
		if err := rows.Scan(&kind, &key, &t, &n); err != nil {
			return st, wrap("load", err)
		}
		if err := st.Add(kind, key, time.Unix(0, t).UTC(), n); err != nil {
			return st, err
		}
	}
	return st, wrap("load", rows.Err())
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("feedback store: %s: %w", op, err)
}
