package pgqueue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sqsintake"
	"github.com/mailrelay/mailrelay/mailproc/pgqueue"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// The queue keeps the SQS intake's sent records, markers and dead letters.
var _ sqsintake.Store = (*pgqueue.Queue)(nil)

func held(id string) spool.Entry {
	e := entry(id)
	e.NextAttempt = spool.HeldDue
	return e
}

func putHeld(t *testing.T, q *pgqueue.Queue, e spool.Entry) bool {
	t.Helper()
	dup, err := q.Put(context.Background(), e)
	if err != nil {
		t.Fatalf("Put %s: %v", e.ID, err)
	}
	return dup
}

// nothingDue fails if Next hands out anything within a short wait.
func nothingDue(t *testing.T, q *pgqueue.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if e, err := q.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on %s handed out %+v (%v), want nothing", q.Replica(), e, err)
	}
}

// Held rows are never claimed by any replica; the replica settling the
// SQS message records sends, finishes or dead-letters them without a
// claim; Forget drops them unless something was sent.
func TestHeldRows(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a := replica(t, url, "a", pgqueue.Options{PollInterval: 20 * time.Millisecond})
	b := replica(t, url, "b", pgqueue.Options{PollInterval: 20 * time.Millisecond})
	tests := []struct {
		name string
		// settle acts on the held row from replica b (which never
		// claimed it) after a stored it.
		settle      func(t *testing.T, id string)
		wantPending bool // still pending (held) afterwards
		wantSent    bool // with its sent record
		wantDup     bool // a Put of the same id afterwards is a duplicate
		wantDead    bool
	}{
		{"kept", func(*testing.T, string) {}, true, false, true, false},
		{"sent then kept", func(t *testing.T, id string) { must(t, b.MarkSent(id, "dest", "ses-1")) }, true, true, true, false},
		{"forgotten unsent", func(t *testing.T, id string) { must(t, b.Forget(id)) }, false, false, false, false},
		{"forget keeps a sent record", func(t *testing.T, id string) {
			must(t, b.MarkSent(id, "dest", "ses-1"))
			must(t, b.Forget(id))
		}, true, true, true, false},
		{"completed", func(t *testing.T, id string) {
			must(t, b.MarkSent(id, "dest", "ses-1"))
			must(t, b.Complete(id))
		}, false, false, true, false},
		{"dead-lettered", func(t *testing.T, id string) { must(t, b.DeadLetter(id, "malformed")) }, false, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "held-" + tt.name
			if putHeld(t, a, held(id)) {
				t.Fatal("first Put a duplicate")
			}
			tt.settle(t, id)
			nothingDue(t, a)
			nothingDue(t, b)
			e, err := a.Pending(id)
			if pending := err == nil; pending != tt.wantPending {
				t.Fatalf("pending = %v (%v), want %v", pending, err, tt.wantPending)
			}
			if !tt.wantPending && !errors.Is(err, spool.ErrNotFound) {
				t.Fatalf("Pending: %v, want ErrNotFound", err)
			}
			if tt.wantPending {
				if !spool.Held(e) || string(e.Payload) != `{"m":"`+id+`"}` || e.Kind != "Received" {
					t.Fatalf("Pending = %+v, want the held entry", e)
				}
				if got := e.Sent["dest"] == "ses-1"; got != tt.wantSent {
					t.Fatalf("sent record %v, want sent %v", e.Sent, tt.wantSent)
				}
			}
			if dup := putHeld(t, b, held(id)); dup != tt.wantDup {
				t.Fatalf("Put again: dup %v, want %v", dup, tt.wantDup)
			}
			dls, err := a.DeadLetters(0)
			must(t, err)
			dead := false
			for _, dl := range dls {
				dead = dead || dl.ID == id
			}
			if dead != tt.wantDead {
				t.Fatalf("dead letter %v, want %v", dead, tt.wantDead)
			}
		})
	}
	// A held dead letter redriven is the queue's own: claimed like any row.
	if n, err := a.Redrive("held-dead-lettered"); n != 1 || err != nil {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	if e := next(t, b); e.ID != "held-dead-lettered" || spool.Held(e) {
		t.Fatalf("redriven: %+v", e)
	}
}

func TestHeldInvalidID(t *testing.T) {
	q := replica(t, pgtest.NewDatabase(t), "a", pgqueue.Options{})
	if _, err := q.Pending(""); !errors.Is(err, spool.ErrInvalidID) {
		t.Fatalf("Pending(\"\"): %v, want ErrInvalidID", err)
	}
	if _, err := q.Pending("unknown"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Pending(unknown): %v, want ErrNotFound", err)
	}
	if err := q.Forget("unknown"); err != nil {
		t.Fatalf("Forget(unknown): %v", err)
	}
}

func TestDropHeld(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a := replica(t, url, "a", pgqueue.Options{})
	old := time.Now().Add(-72 * time.Hour)
	for _, e := range []spool.Entry{
		{ID: "old-held", EnqueuedAt: old, NextAttempt: spool.HeldDue},
		{ID: "old-busy", EnqueuedAt: old, NextAttempt: spool.HeldDue},
		{ID: "old-sent", EnqueuedAt: old, NextAttempt: spool.HeldDue, Sent: map[string]string{"k": "v"}},
		{ID: "new-held", NextAttempt: spool.HeldDue},
		{ID: "old-queue", EnqueuedAt: old}, // the queue's own: never dropped
	} {
		e.Payload = []byte("x")
		putHeld(t, a, e)
	}
	tests := []struct {
		name   string
		limit  int
		want   int
		remain map[string]bool
	}{
		{"limit 0", 0, 0, map[string]bool{"old-held": true, "old-sent": true}},
		{"limit 1", 1, 1, nil},
		{"rest", 100, 1, map[string]bool{"old-held": false, "old-sent": false, "old-busy": true, "new-held": true, "old-queue": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := a.DropHeld(time.Now().Add(-48*time.Hour), tt.limit, func(id string) bool { return id == "old-busy" })
			if err != nil || n != tt.want {
				t.Fatalf("DropHeld = %d, %v; want %d", n, err, tt.want)
			}
			for id, want := range tt.remain {
				if _, err := a.Pending(id); (err == nil) != want {
					t.Errorf("%s pending = %v, want %v", id, err == nil, want)
				}
			}
		})
	}
}

// A replica dies holding an SQS message whose first copy was sent: the
// message comes back to another replica, which finds the row (a
// duplicate), resumes it with the sent record, and finishes it.
func TestHeldResumedByAnotherReplica(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a := replica(t, url, "a", pgqueue.Options{})
	b := replica(t, url, "b", pgqueue.Options{})
	putHeld(t, a, held("r1"))
	must(t, a.MarkSent("r1", "chunk-1", "ses-1"))
	a.Crash()
	if !putHeld(t, b, held("r1")) {
		t.Fatal("redelivery to b not a duplicate")
	}
	e, err := b.Pending("r1")
	if err != nil || !spool.Held(e) || e.Sent["chunk-1"] != "ses-1" {
		t.Fatalf("Pending on b = %+v, %v; want held with chunk-1 sent", e, err)
	}
	must(t, b.MarkSent("r1", "chunk-2", "ses-2"))
	must(t, b.Complete("r1"))
	if _, err := b.Pending("r1"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Pending after Complete: %v", err)
	}
	if !putHeld(t, b, held("r1")) {
		t.Fatal("finished id not a duplicate")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
