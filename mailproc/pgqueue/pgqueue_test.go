package pgqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/pgqueue"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// The queue serves the same consumers as the spool.
var (
	_ inbound.Queue  = (*pgqueue.Queue)(nil)
	_ mailproc.Queue = (*pgqueue.Queue)(nil)
	_ admin.Queue    = (*pgqueue.Queue)(nil)
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openDB opens and migrates url.
func openDB(t *testing.T, url string, o statedb.Options) *statedb.DB {
	t.Helper()
	o.URL = url
	db, err := statedb.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// replica returns one replica's queue on url.
func replica(t *testing.T, url, name string, o pgqueue.Options) *pgqueue.Queue {
	t.Helper()
	o.Replica = name
	q := pgqueue.New(openDB(t, url, statedb.Options{}), o)
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func entry(id string) spool.Entry {
	return spool.Entry{ID: id, Kind: "Received", TopicARN: "arn:t", Payload: []byte(`{"m":"` + id + `"}`)}
}

func put(t *testing.T, q *pgqueue.Queue, id string) bool {
	t.Helper()
	dup, err := q.Put(context.Background(), entry(id))
	if err != nil {
		t.Fatalf("Put %s: %v", id, err)
	}
	return dup
}

// next claims the next entry, waiting at most a bounded time.
func next(t *testing.T, q *pgqueue.Queue) spool.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := q.Next(ctx)
	if err != nil {
		t.Fatalf("Next on %s: %v", q.Replica(), err)
	}
	return e
}

func TestPutDeduplicates(t *testing.T) {
	q := replica(t, pgtest.NewDatabase(t), "a", pgqueue.Options{})
	ctx := context.Background()
	tests := []struct {
		name    string
		id      string
		before  func(id string)
		wantDup bool
		wantErr error
	}{
		{"new", "n1", nil, false, nil},
		{"pending", "n2", func(id string) { put(t, q, id) }, true, nil},
		{"finished", "n3", func(id string) {
			put(t, q, id)
			if err := q.Complete(id); err != nil {
				t.Fatal(err)
			}
		}, true, nil},
		{"dead", "n4", func(id string) {
			put(t, q, id)
			if err := q.DeadLetter(id, "bad"); err != nil {
				t.Fatal(err)
			}
		}, true, nil},
		{"empty id", "", nil, false, spool.ErrInvalidID},
		{"NUL in id", "a\x00b", nil, false, spool.ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before(tt.id)
			}
			dup, err := q.Put(ctx, entry(tt.id))
			if !errors.Is(err, tt.wantErr) || dup != tt.wantDup {
				t.Fatalf("Put = %v, %v; want %v, %v", dup, err, tt.wantDup, tt.wantErr)
			}
		})
	}
}

func TestDedupeExpires(t *testing.T) {
	q := replica(t, pgtest.NewDatabase(t), "a", pgqueue.Options{DedupeTTL: time.Millisecond})
	put(t, q, "x")
	if err := q.Complete(next(t, q).ID); err != nil {
		t.Fatal(err)
	}
	// Bounded: the marker expires a millisecond after Complete.
	for i := 0; ; i++ {
		if !put(t, q, "x") {
			break
		}
		if i == 100 {
			t.Fatal("finished id still a duplicate long after DedupeTTL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e := next(t, q); e.ID != "x" || string(e.Payload) != `{"m":"x"}` {
		t.Fatalf("re-accepted entry = %+v", e)
	}
}

func TestLifecycle(t *testing.T) {
	q := replica(t, pgtest.NewDatabase(t), "a", pgqueue.Options{})
	put(t, q, "m1")
	e := next(t, q)
	if e.ID != "m1" || e.Kind != "Received" || e.TopicARN != "arn:t" || string(e.Payload) != `{"m":"m1"}` || e.EnqueuedAt.IsZero() {
		t.Fatalf("Next = %+v", e)
	}
	if err := q.MarkSent("m1", "dest-a", "ses-1"); err != nil {
		t.Fatal(err)
	}
	if err := q.Retry("m1", time.Time{}, "throttled"); err != nil {
		t.Fatal(err)
	}
	e = next(t, q)
	if e.Attempts != 1 || e.LastError != "throttled" || e.Sent["dest-a"] != "ses-1" {
		t.Fatalf("after Retry: %+v", e)
	}
	if err := q.DeadLetter("m1", "ses_rejected"); err != nil {
		t.Fatal(err)
	}
	if err := q.Complete("m1"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Complete of a dead letter: %v, want ErrNotFound", err)
	}
	dls, err := q.DeadLetters(0)
	if err != nil || len(dls) != 1 || dls[0].ID != "m1" || dls[0].Reason != "ses_rejected" || dls[0].DeadAt.IsZero() || string(dls[0].Payload) != `{"m":"m1"}` {
		t.Fatalf("DeadLetters = %+v, %v", dls, err)
	}
	q.Refresh()
	if st := q.Stats(); st.Messages != 0 || st.DeadLetters != 1 || st.DeadLetterBytes != int64(len(`{"m":"m1"}`)) {
		t.Fatalf("Stats = %+v", st)
	}
	n, err := q.Redrive("m1", "nope")
	if n != 1 || !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Redrive = %d, %v; want 1 and ErrNotFound for nope", n, err)
	}
	e = next(t, q)
	if e.ID != "m1" || e.Attempts != 0 || e.Sent["dest-a"] != "ses-1" {
		t.Fatalf("redriven: %+v, want attempts 0 and the sent-record kept", e)
	}
	if err := q.Complete("m1"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { return q.Complete("m1") },
		func() error { return q.MarkSent("m1", "k", "v") },
		func() error { return q.DeadLetter("m1", "r") },
		func() error { return q.Retry("zz", time.Time{}, "r") },
	} {
		if err := op(); !errors.Is(err, spool.ErrNotFound) {
			t.Fatalf("op on a finished/unknown id: %v, want ErrNotFound", err)
		}
	}
	q.Refresh()
	if st := q.Stats(); st.Messages != 0 || st.DeadLetters != 0 {
		t.Fatalf("Stats at the end = %+v", st)
	}
}

func TestFull(t *testing.T) {
	q := replica(t, pgtest.NewDatabase(t), "a", pgqueue.Options{MaxMessages: 2})
	put(t, q, "f1")
	put(t, q, "f2")
	if !q.Full() {
		t.Fatal("Full false at the bound")
	}
	if _, err := q.Put(context.Background(), entry("f3")); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Put over the bound: %v, want ErrFull", err)
	}
	if err := q.Complete(next(t, q).ID); err != nil {
		t.Fatal(err)
	}
	q.Refresh()
	if q.Full() {
		t.Fatal("still Full after one finished")
	}
	put(t, q, "f3")
}

// A redelivery to another replica is a duplicate; the same MessageId Put
// concurrently on two replicas is stored once.
func TestDedupAcrossReplicas(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := replica(t, url, "a", pgqueue.Options{}), replica(t, url, "b", pgqueue.Options{})
	put(t, a, "r1")
	if !put(t, b, "r1") {
		t.Fatal("redelivery to replica b not a duplicate")
	}
	for i := range 20 {
		id := fmt.Sprintf("c%d", i)
		var wg sync.WaitGroup
		dups := make([]bool, 2)
		for j, q := range []*pgqueue.Queue{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dup, err := q.Put(context.Background(), entry(id))
				if err != nil {
					t.Error(err)
				}
				dups[j] = dup
			}()
		}
		wg.Wait()
		if dups[0] == dups[1] {
			t.Fatalf("%s: duplicate flags %v, want exactly one false", id, dups)
		}
	}
}

// A replica that dies holding work: another takes it over when the lease
// ends, with the sent-record, so nothing is sent twice.
func TestTakeoverAfterLease(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a := replica(t, url, "a", pgqueue.Options{Lease: time.Second})
	b := replica(t, url, "b", pgqueue.Options{Lease: time.Second, PollInterval: 50 * time.Millisecond})
	put(t, a, "t1")
	if e := next(t, a); e.ID != "t1" {
		t.Fatal(e.ID)
	}
	if err := a.MarkSent("t1", "dest", "ses-9"); err != nil {
		t.Fatal(err)
	}
	a.Crash()
	e := next(t, b) // due once a's lease ends
	if e.ID != "t1" || e.Sent["dest"] != "ses-9" {
		t.Fatalf("taken over: %+v, want t1 with its sent-record", e)
	}
	if err := b.Complete("t1"); err != nil {
		t.Fatal(err)
	}
}

// A live replica's claim is not taken; one released at Close is, at once.
func TestClaimsHeldAndReleased(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a := replica(t, url, "a", pgqueue.Options{Lease: time.Minute})
	b := replica(t, url, "b", pgqueue.Options{Lease: time.Minute, PollInterval: 50 * time.Millisecond})
	put(t, a, "h1")
	next(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := b.Next(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b.Next while a holds h1: %v, want nothing to claim", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if e := next(t, b); e.ID != "h1" {
		t.Fatal(e.ID)
	}
	if _, err := a.Next(context.Background()); !errors.Is(err, spool.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

// PostgreSQL stopped: Put fails (transient, bounded by the call timeout)
// instead of acknowledging; after a restart it works and nothing is lost.
func TestOutage(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	url := srv.NewDatabase(t)
	db := openDB(t, url, statedb.Options{CallTimeout: 2 * time.Second, BreakerOpenTimeout: 100 * time.Millisecond})
	q := pgqueue.New(db, pgqueue.Options{Replica: "a", PollInterval: 50 * time.Millisecond})
	t.Cleanup(func() { _ = q.Close() })
	put(t, q, "before")

	srv.Stop(t)
	done := make(chan error, 1)
	go func() { _, err := q.Put(context.Background(), entry("during")); done <- err }()
	select {
	case err := <-done:
		if err == nil || failure.ClassOf(err) != failure.ClassTransient {
			t.Fatalf("Put with the database down: %v, want a transient error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Put with the database down did not return")
	}

	srv.Restart(t)
	for i := 0; ; i++ { // bounded: the breaker lets a trial through after 100 ms
		dup, err := q.Put(context.Background(), entry("during"))
		if err == nil {
			if dup {
				t.Fatal("refused Put was stored")
			}
			break
		}
		if i == 200 {
			t.Fatalf("Put after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := map[string]bool{}
	for range 2 {
		e := next(t, q)
		got[e.ID] = true
		if err := q.Complete(e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if !got["before"] || !got["during"] {
		t.Fatalf("after the outage got %v, want before and during", got)
	}
}
