package statedb_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
	"github.com/mailrelay/mailrelay/telemetry"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, url string, o statedb.Options) *statedb.DB {
	t.Helper()
	o.URL = url
	d, err := statedb.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// Replicas starting at once migrate the schema once; all see the version.
func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const replicas = 3
	versions := make([]int64, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		d := open(t, url, statedb.Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			versions[i], errs[i] = d.Migrate(ctx)
		}()
	}
	wg.Wait()
	for i := range replicas {
		if errs[i] != nil || versions[i] < 1 {
			t.Fatalf("replica %d: version %d, %v", i, versions[i], errs[i])
		}
	}
	d := open(t, url, statedb.Options{})
	var n int
	err := d.Do(context.Background(), "count", func(ctx context.Context, p *pgxpool.Pool) error {
		return p.QueryRow(ctx, "SELECT count(*) FROM "+statedb.VersionTable+" WHERE version_id > 0").Scan(&n)
	})
	if err != nil || int64(n) != versions[0] {
		t.Fatalf("%d migrations recorded (%v), want %d: applied more than once?", n, err, versions[0])
	}
}

func TestDoClassifiesAndTimes(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	m := telemetry.NewMetrics()
	d := open(t, srv.NewDatabase(t), statedb.Options{Metrics: m, BreakerFailures: 2, BreakerOpenTimeout: time.Hour, CallTimeout: 2 * time.Second})
	ctx := context.Background()
	exec := func(sql string) func(context.Context, *pgxpool.Pool) error {
		return func(ctx context.Context, p *pgxpool.Pool) error { _, err := p.Exec(ctx, sql); return err }
	}
	tests := []struct {
		name, sql string
		class     failure.Class
		ok        bool
	}{
		{"ok", "SELECT 1", 0, true},
		{"syntax error is permanent", "SELEKT 1", failure.ClassPermanent, false},
		{"division by zero is permanent", "SELECT 1/0", failure.ClassPermanent, false},
		{"statement timeout is transient", "SET statement_timeout = 1; SELECT pg_sleep(1)", failure.ClassTransient, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Do(ctx, "test", exec(tt.sql))
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || failure.ClassOf(err) != tt.class || failure.ReasonOf(err) != failure.ReasonDatabase {
				t.Fatalf("err %v: class %v reason %s, want %v %s", err, failure.ClassOf(err), failure.ReasonOf(err), tt.class, failure.ReasonDatabase)
			}
		})
	}
	if n := testutil.CollectAndCount(m.ExternalCallDuration, "mailrelay_external_call_duration_seconds"); n < 2 {
		t.Fatalf("%d series of call durations, want ok and error of operation test", n)
	}

	// Down: transient, and after BreakerFailures the breaker refuses.
	srv.Stop(t)
	for range 2 {
		if err := d.Do(ctx, "test", exec("SELECT 1")); failure.ClassOf(err) != failure.ClassTransient || err == nil {
			t.Fatalf("database down: %v, want a transient error", err)
		}
	}
	err := d.Do(ctx, "test", exec("SELECT 1"))
	if !errors.Is(err, statedb.ErrUnavailable) || failure.ReasonOf(err) != failure.ReasonBreakerOpen || d.Available() {
		t.Fatalf("after failures: %v (available %v), want the open breaker", err, d.Available())
	}
	if v := testutil.ToFloat64(m.BreakerState.WithLabelValues("postgres")); v != 2 {
		t.Fatalf("breaker gauge %v, want 2 (open)", v)
	}
}
