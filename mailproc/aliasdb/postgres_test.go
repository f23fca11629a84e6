package aliasdb

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/statedb"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// postgresBackends is the PostgreSQL backend on the pgtest server (a fresh
// database per test); without PostgreSQL installed the tests using it skip
// loudly (or fail where pgtest.RequireEnv is set).
func postgresBackends(t *testing.T) []backend {
	return []backend{{"postgres", func(t *testing.T) *Store {
		s, err := OpenPostgres(context.Background(), pgtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}}
}

// TestPostgresSharedDatabase: the alias migrations and the state layer's
// live in one database without colliding (own version tables and advisory
// locks), replicas starting together migrate once, and a second start
// finds nothing to do.
func TestPostgresSharedDatabase(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	sdb, err := statedb.Open(ctx, statedb.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	if _, err := sdb.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stores := make([]*Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	if err := stores[0].Create(ctx, alias("a@r.example", "d@example.org")); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[2].Get(ctx, "a@r.example"); err != nil {
		t.Fatalf("another replica does not see the alias: %v", err)
	}
	v0, _ := stores[1].Version(ctx)
	if v0 != 1 {
		t.Fatalf("version = %d after one change, want 1 (migrated more than once?)", v0)
	}
	if _, err := sdb.Migrate(ctx); err != nil {
		t.Fatalf("state layer migrating again: %v", err)
	}
	var n int
	if err := stores[0].db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+VersionTable+" WHERE version_id > 0").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%s: %d applied migrations, %v", VersionTable, n, err)
	}
	if err := stores[0].db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+statedb.VersionTable).Scan(&n); err != nil || n < 2 {
		t.Fatalf("%s: %d rows, %v", statedb.VersionTable, n, err)
	}
}
