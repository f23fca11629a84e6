package statedb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the table in which goose records the applied migrations.
const VersionTable = "mailrelay_schema_version"

// Migrate applies the pending migrations (embedded SQL files under
// migrations/, numbered) and returns the schema version reached. Replicas
// starting together are safe: goose holds a PostgreSQL advisory lock (a
// session lock) while it migrates, and the others wait for it and then
// find nothing to do. It runs outside the breaker and the per-call
// timeout: ctx bounds it.
func (d *DB) Migrate(ctx context.Context) (int64, error) {
	p, closeDB, err := d.provider()
	if err != nil {
		return 0, err
	}
	defer closeDB()
	results, err := p.Up(ctx)
	for _, r := range results {
		if r.Error == nil {
			d.log.Info("database migration applied", "version", r.Source.Version, "file", r.Source.Path)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("statedb: migrating: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("statedb: schema version: %w", err)
	}
	return v, nil
}

// ErrSchemaBehind says the database lacks migrations this build needs.
var ErrSchemaBehind = errors.New("statedb: the database schema is behind this build")

// CheckMigrated returns nil when every embedded migration is applied, an
// error wrapping ErrSchemaBehind when some are pending, or the error that
// kept it from asking.
func (d *DB) CheckMigrated(ctx context.Context) error {
	p, closeDB, err := d.provider()
	if err != nil {
		return err
	}
	defer closeDB()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("statedb: schema version: %w", err)
	}
	if pending {
		return ErrSchemaBehind
	}
	return nil
}

// Version returns the schema version the database is at.
func (d *DB) Version(ctx context.Context) (int64, error) {
	p, closeDB, err := d.provider()
	if err != nil {
		return 0, err
	}
	defer closeDB()
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("statedb: schema version: %w", err)
	}
	return v, nil
}

// provider is goose on the pool, with the advisory session lock.
func (d *DB) provider() (*goose.Provider, func(), error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, nil, err
	}
	db := stdlib.OpenDBFromPool(d.pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("statedb: migrations: %w", err)
	}
	return p, func() { _ = db.Close() }, nil
}
