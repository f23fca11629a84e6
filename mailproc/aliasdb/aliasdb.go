// Package aliasdb stores managed aliases (address, destinations, state,
// description, counters) in an embedded SQLite database (the default, a
// file in the data directory; modernc.org/sqlite, no cgo) or in
// PostgreSQL (pgx's database/sql driver) when replicas share one. Both run
// the same portable SQL and the same migrations (pressly/goose, embedded,
// version table goose_aliases). A version row, bumped in the same
// transaction as every change, lets each replica's resolver notice a
// change made through another (aliases.Combined polls it).
//
// It implements aliases.Store and aliases.ManagedStore; Counter batches
// the per-alias counters so the send path never waits on the database.
package aliasdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is goose's version table for these migrations: its own, so
// that other migration sets in the same database never collide with it.
const VersionTable = "goose_aliases"

// migrateLockID is the PostgreSQL advisory lock taken while migrating, so
// that replicas starting together migrate one at a time (goose's default
// id is left to other migration sets).
const migrateLockID int64 = 0x6d61696c616c // "mailal"

// Store is the alias store. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

var (
	_ aliases.Store        = (*Store)(nil)
	_ aliases.ManagedStore = (*Store)(nil)
)

// OpenSQLite opens (creating it if need be) the SQLite database at path
// and migrates it.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("alias database path %q: '?' and '#' are not allowed", path)
	}
	// A rollback journal, not WAL: WAL maps a -shm file even to read, and
	// on a full disk (the spool's neighbour) that fails, so the relay could
	// not start to answer 503 and wait for space. With a rollback journal,
	// reads need no file of their own; only writes fail while it is full.
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(DELETE)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open alias database %s: %w", path, err)
	}
	// One writer at a time is all SQLite does; one connection also keeps
	// the pragmas in force. Lookups are cached by the resolver.
	db.SetMaxOpenConns(1)
	return open(ctx, db, goose.DialectSQLite3, nil)
}

// OpenPostgres connects to PostgreSQL (a pgx connection string or URL)
// and migrates the database.
func OpenPostgres(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open alias database: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrateLockID))
	if err != nil {
		db.Close()
		return nil, err
	}
	return open(ctx, db, goose.DialectPostgres, locker)
}

func open(ctx context.Context, db *sql.DB, dialect goose.Dialect, locker lock.SessionLocker) (*Store, error) {
	if err := migrate(ctx, db, dialect, locker); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// migrate applies the embedded migrations not yet applied.
func migrate(ctx context.Context, db *sql.DB, dialect goose.Dialect, locker lock.SessionLocker) error {
	opts := []goose.ProviderOption{goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true)}
	if locker != nil {
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db, mustSub(migrations, "migrations"), opts...)
	if err != nil {
		return fmt.Errorf("alias database migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate alias database: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

const columns = "address, forward_to, state, description, created_ms, forwarded, blocked, replied, spam, last_used_ms"

type scanner interface{ Scan(dest ...any) error }

func scanAlias(row scanner) (aliases.Alias, error) {
	var a aliases.Alias
	var fw, state string
	var created, lastUsed int64
	if err := row.Scan(&a.Address, &fw, &state, &a.Description, &created, &a.Forwarded, &a.Blocked, &a.Replied, &a.Spam, &lastUsed); err != nil {
		return aliases.Alias{}, err
	}
	a.ForwardTo = strings.Split(fw, ",")
	a.State = aliases.State(state)
	a.Source = aliases.SourceManaged
	a.Created = time.UnixMilli(created).UTC()
	if lastUsed > 0 {
		a.LastUsed = time.UnixMilli(lastUsed).UTC()
	}
	return a, nil
}

// Get returns the managed alias with the canonical address.
func (s *Store) Get(ctx context.Context, address string) (aliases.Alias, error) {
	a, err := scanAlias(s.db.QueryRowContext(ctx, "SELECT "+columns+" FROM managed_aliases WHERE address = $1", address))
	if errors.Is(err, sql.ErrNoRows) {
		return aliases.Alias{}, fmt.Errorf("%w: %s", aliases.ErrNotFound, address)
	}
	if err != nil {
		return aliases.Alias{}, fmt.Errorf("alias store: get %s: %w", address, err)
	}
	return a, nil
}

// List returns every managed alias, sorted by address.
func (s *Store) List(ctx context.Context) ([]aliases.Alias, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+columns+" FROM managed_aliases ORDER BY address")
	if err != nil {
		return nil, fmt.Errorf("alias store: list: %w", err)
	}
	defer rows.Close()
	out := []aliases.Alias{}
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, fmt.Errorf("alias store: list: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alias store: list: %w", err)
	}
	return out, nil
}

// Version returns the change counter.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, "SELECT version FROM managed_aliases_version WHERE id = 1").Scan(&v); err != nil {
		return 0, fmt.Errorf("alias store: version: %w", err)
	}
	return v, nil
}

// Create stores a new alias (validated by the caller: aliases.Manager).
func (s *Store) Create(ctx context.Context, a aliases.Alias) error {
	if a.Address == "" || len(a.ForwardTo) == 0 || !a.State.Valid() {
		return fmt.Errorf("%w: address, destinations and a valid state are required", aliases.ErrInvalid)
	}
	for _, to := range a.ForwardTo {
		if to == "" || strings.Contains(to, ",") {
			return fmt.Errorf("%w: destination %q", aliases.ErrInvalid, to)
		}
	}
	return s.change(ctx, "create", a.Address, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO managed_aliases (address, forward_to, state, description, created_ms)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address) DO NOTHING`,
			a.Address, strings.Join(a.ForwardTo, ","), string(a.State), a.Description, a.Created.UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return aliases.ErrExists
		}
		return nil
	})
}

// SetState changes an alias's state and returns the alias.
func (s *Store) SetState(ctx context.Context, address string, state aliases.State) (aliases.Alias, error) {
	if !state.Valid() {
		return aliases.Alias{}, fmt.Errorf("%w: state %q", aliases.ErrInvalid, state)
	}
	var a aliases.Alias
	err := s.change(ctx, "set state", address, func(tx *sql.Tx) error {
		if err := affected(tx.ExecContext(ctx, "UPDATE managed_aliases SET state = $1 WHERE address = $2", string(state), address)); err != nil {
			return err
		}
		var err error
		a, err = scanAlias(tx.QueryRowContext(ctx, "SELECT "+columns+" FROM managed_aliases WHERE address = $1", address))
		return err
	})
	return a, err
}

// Delete removes an alias.
func (s *Store) Delete(ctx context.Context, address string) error {
	return s.change(ctx, "delete", address, func(tx *sql.Tx) error {
		return affected(tx.ExecContext(ctx, "DELETE FROM managed_aliases WHERE address = $1", address))
	})
}

// affected turns "no row changed" into ErrNotFound.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return aliases.ErrNotFound
	}
	return nil
}

// change runs f, the change what of address, and bumps the version in one
// transaction.
func (s *Store) change(ctx context.Context, what, address string, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("alias store: %s %s: %w", what, address, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := f(tx); err != nil {
		if errors.Is(err, aliases.ErrNotFound) || errors.Is(err, aliases.ErrExists) {
			return fmt.Errorf("%w: %s", err, address)
		}
		return fmt.Errorf("alias store: %s %s: %w", what, address, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE managed_aliases_version SET version = version + 1 WHERE id = 1"); err != nil {
		return fmt.Errorf("alias store: %s %s: bump version: %w", what, address, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("alias store: %s %s: commit: %w", what, address, err)
	}
	return nil
}

// AddCounts adds deltas to the counters of the named aliases in one
// transaction; LastUsed only moves forward. Aliases not in the store
// (the alias file's, catch-all hits) are skipped.
func (s *Store) AddCounts(ctx context.Context, deltas map[string]aliases.Counts) error {
	if len(deltas) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("alias store: counters: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	stmt, err := tx.PrepareContext(ctx, `UPDATE managed_aliases SET
		forwarded = forwarded + $1, blocked = blocked + $2, replied = replied + $3, spam = spam + $4,
		last_used_ms = CASE WHEN last_used_ms < $5 THEN $5 ELSE last_used_ms END
		WHERE address = $6`)
	if err != nil {
		return fmt.Errorf("alias store: counters: %w", err)
	}
	defer stmt.Close()
	for addr, d := range deltas {
		var last int64
		if !d.LastUsed.IsZero() {
			last = d.LastUsed.UnixMilli()
		}
		if _, err := stmt.ExecContext(ctx, d.Forwarded, d.Blocked, d.Replied, d.Spam, last, addr); err != nil {
			return fmt.Errorf("alias store: counters of %s: %w", addr, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("alias store: counters: commit: %w", err)
	}
	return nil
}
