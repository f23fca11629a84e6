package pgstore_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/pgstore"
	"github.com/mailrelay/mailrelay/mailproc/feedback/storetest"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open returns a store on url through a pool of its own (a replica),
// migrated.
func open(t *testing.T, url string) feedback.Store {
	t.Helper()
	db, err := statedb.Open(context.Background(), statedb.Options{URL: url, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := pgstore.New(db)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		url := pgtest.NewDatabase(t)
		return func(t *testing.T) feedback.Store { return open(t, url) }
	})
}

// PostgreSQL stopped: a call fails (transient, bounded by the call
// timeout) instead of hanging; after a restart the state is there.
func TestOutage(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	url := srv.NewDatabase(t)
	s := open(t, url)
	ctx := context.Background()
	if _, err := s.AddSends(ctx, "a@x", "2026-03-01", 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	if _, _, err := s.Paused(ctx, "a@x", time.Now()); err == nil {
		t.Fatal("Paused with the database down: no error")
	}
	srv.Restart(t)
	var n int
	var err error
	for range 200 { // bounded: the breaker lets a trial through after its timeout
		if n, err = s.Sends(ctx, "a@x", "2026-03-01"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 || err != nil {
		t.Fatalf("Sends after the restart = %d, %v; want 1", n, err)
	}
}
