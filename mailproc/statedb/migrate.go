package statedb

import (
	"context"
	"embed"
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
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return 0, err
	}
	db := stdlib.OpenDBFromPool(d.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("statedb: migrations: %w", err)
	}
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
