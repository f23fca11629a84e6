package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

func openTest(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func entry(id string, payload string) Entry {
	return Entry{ID: id, Kind: "Received", TopicARN: "arn:aws:sns:eu-west-1:1:t", Payload: []byte(payload)}
}

func mustPut(t testing.TB, s *Spool, e Entry) {
	t.Helper()
	dup, err := s.Put(context.Background(), e)
	if err != nil {
		t.Fatalf("put %s: %v", e.ID, err)
	}
	if dup {
		t.Fatalf("put %s: unexpected duplicate", e.ID)
	}
}

func nextWithin(t testing.TB, s *Spool, d time.Duration) (Entry, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Next(ctx)
}

func mustNext(t testing.TB, s *Spool) Entry {
	t.Helper()
	e, err := nextWithin(t, s, 10*time.Second)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return e
}

// mustBeEmpty checks that no entry is available now.
func mustBeEmpty(t testing.TB, s *Spool) {
	t.Helper()
	e, err := nextWithin(t, s, 30*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next: got %q, %v; want nothing available", e.ID, err)
	}
}

func TestPutNextComplete(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Now: clock.Now})

	mustPut(t, s, entry("a", "payload-a"))
	clock.Advance(time.Second)
	mustPut(t, s, entry("b", "payload-bb"))

	st := s.Stats()
	if st.Messages != 2 || st.Bytes != int64(len("payload-a")+len("payload-bb")) || !st.Oldest.Equal(clock.Now().Add(-time.Second)) {
		t.Fatalf("stats %+v", st)
	}

	e := mustNext(t, s)
	if e.ID != "a" || string(e.Payload) != "payload-a" || e.Kind != "Received" || e.TopicARN == "" || !e.EnqueuedAt.Equal(st.Oldest) {
		t.Fatalf("next: %+v", e)
	}
	if err := s.Complete("a"); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := s.Complete("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second complete: %v, want ErrNotFound", err)
	}
	e = mustNext(t, s)
	if e.ID != "b" {
		t.Fatalf("next: %q, want b", e.ID)
	}
	mustBeEmpty(t, s) // b is leased
	s.Release("b")
	if e := mustNext(t, s); e.ID != "b" {
		t.Fatalf("next after release: %q", e.ID)
	}
	if err := s.Complete("b"); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if st := s.Stats(); st.Messages != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Fatalf("stats after completing all: %+v", st)
	}
	mustBeEmpty(t, s)
}

func TestDedupe(t *testing.T) {
	const ttl = time.Hour
	tests := []struct {
		name    string
		prepare func(t *testing.T, s *Spool, clock *fakeClock) // leaves "m" in some state
		wantDup bool
	}{
		{"unknown", func(t *testing.T, s *Spool, clock *fakeClock) {}, false},
		{"pending", func(t *testing.T, s *Spool, clock *fakeClock) { mustPut(t, s, entry("m", "x")) }, true},
		{"leased", func(t *testing.T, s *Spool, clock *fakeClock) {
			mustPut(t, s, entry("m", "x"))
			mustNext(t, s)
		}, true},
		{"completed", func(t *testing.T, s *Spool, clock *fakeClock) {
			mustPut(t, s, entry("m", "x"))
			mustNext(t, s)
			if err := s.Complete("m"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(ttl - time.Second)
		}, true},
		{"completed, ttl expired", func(t *testing.T, s *Spool, clock *fakeClock) {
			mustPut(t, s, entry("m", "x"))
			mustNext(t, s)
			if err := s.Complete("m"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(ttl + time.Second)
		}, false},
		{"completed, ttl expired, pruned", func(t *testing.T, s *Spool, clock *fakeClock) {
			mustPut(t, s, entry("m", "x"))
			mustNext(t, s)
			if err := s.Complete("m"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(ttl + time.Second)
			if n, err := s.pruneOnce(10); err != nil || n != 1 {
				t.Fatalf("prune: %d, %v", n, err)
			}
		}, false},
		{"dead-lettered", func(t *testing.T, s *Spool, clock *fakeClock) {
			mustPut(t, s, entry("m", "x"))
			mustNext(t, s)
			if err := s.DeadLetter("m", "bad"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(10 * ttl)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			s := openTest(t, t.TempDir(), Options{Now: clock.Now, DedupeTTL: ttl})
			tc.prepare(t, s, clock)
			before := s.Stats()
			dup, err := s.Put(context.Background(), entry("m", "second"))
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			if dup != tc.wantDup {
				t.Fatalf("duplicate = %v, want %v", dup, tc.wantDup)
			}
			after := s.Stats()
			if tc.wantDup && after != before {
				t.Fatalf("duplicate changed stats: %+v -> %+v", before, after)
			}
			if !tc.wantDup {
				if after.Messages != before.Messages+1 {
					t.Fatalf("stats %+v, want one more message than %+v", after, before)
				}
				if e := mustNext(t, s); e.ID != "m" || string(e.Payload) != "second" {
					t.Fatalf("next: %+v", e)
				}
			}
		})
	}
}

func TestPruneKeepsRewrittenMarker(t *testing.T) {
	const ttl = time.Hour
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Now: clock.Now, DedupeTTL: ttl})
	finish := func(id string) {
		t.Helper()
		mustPut(t, s, entry(id, "x"))
		if e := mustNext(t, s); e.ID != id {
			t.Fatalf("next %q, want %q", e.ID, id)
		}
		if err := s.Complete(id); err != nil {
			t.Fatal(err)
		}
	}
	finish("a")
	finish("b")
	clock.Advance(ttl + time.Second)
	finish("a") // accepted again after expiry; new marker, old index entry still there
	clock.Advance(time.Second)
	n, err := s.pruneOnce(100)
	if err != nil || n != 2 {
		t.Fatalf("prune: %d, %v; want 2 expiry entries removed", n, err)
	}
	if n, err := s.pruneOnce(100); err != nil || n != 0 {
		t.Fatalf("second prune: %d, %v", n, err)
	}
	if dup, err := s.Put(context.Background(), entry("a", "x")); err != nil || !dup {
		t.Fatalf("put a: dup=%v err=%v; the fresh marker must survive pruning", dup, err)
	}
	if dup, err := s.Put(context.Background(), entry("b", "x")); err != nil || dup {
		t.Fatalf("put b: dup=%v err=%v; expired marker", dup, err)
	}
}

func TestPruneBounded(t *testing.T) {
	const ttl = time.Minute
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Now: clock.Now, DedupeTTL: ttl})
	for i := range 25 {
		id := fmt.Sprintf("m%02d", i)
		mustPut(t, s, entry(id, "x"))
		mustNext(t, s)
		if err := s.Complete(id); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * ttl)
	var got []int
	for range 5 {
		n, err := s.pruneOnce(10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if want := []int{10, 10, 5, 0, 0}; !slices.Equal(got, want) {
		t.Fatalf("prune passes removed %v, want %v", got, want)
	}
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name     string
		maxMsgs  int
		maxBytes int64
		sizes    []int // payload sizes put in order
		wantFull int   // index of the first Put that must fail with ErrFull (-1: none)
		fullNow  bool  // Full() after the puts
	}{
		{"messages", 3, 1 << 20, []int{1, 1, 1, 1}, 3, true},
		{"bytes", 100, 100, []int{40, 40, 21}, 2, false},
		{"bytes exactly", 100, 100, []int{40, 60, 1}, 2, true},
		{"below both", 10, 1000, []int{10, 10}, -1, false},
		{"single too large", 10, 100, []int{101}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir(), Options{MaxMessages: tc.maxMsgs, MaxBytes: tc.maxBytes})
			for i, size := range tc.sizes {
				_, err := s.Put(context.Background(), entry(fmt.Sprintf("m%d", i), strings.Repeat("x", size)))
				if i == tc.wantFull {
					if !errors.Is(err, ErrFull) {
						t.Fatalf("put %d: %v, want ErrFull", i, err)
					}
				} else if err != nil {
					t.Fatalf("put %d: %v", i, err)
				}
			}
			if got := s.Full(); got != tc.fullNow {
				t.Fatalf("Full() = %v, want %v (stats %+v)", got, tc.fullNow, s.Stats())
			}
		})
	}

	t.Run("complete frees room", func(t *testing.T) {
		s := openTest(t, t.TempDir(), Options{MaxMessages: 2})
		mustPut(t, s, entry("a", "x"))
		mustPut(t, s, entry("b", "x"))
		if !s.Full() {
			t.Fatal("not full at bound")
		}
		if _, err := s.Put(context.Background(), entry("c", "x")); !errors.Is(err, ErrFull) {
			t.Fatalf("put c: %v, want ErrFull", err)
		}
		// A duplicate is still recognised while full.
		if dup, err := s.Put(context.Background(), entry("a", "x")); err != nil || !dup {
			t.Fatalf("put duplicate while full: %v, %v", dup, err)
		}
		e := mustNext(t, s)
		if err := s.Complete(e.ID); err != nil {
			t.Fatal(err)
		}
		if s.Full() {
			t.Fatal("still full after complete")
		}
		mustPut(t, s, entry("c", "x"))
	})
}

func TestInvalidID(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	for _, id := range []string{"", strings.Repeat("a", MaxIDLength+1), "a\x00b"} {
		if _, err := s.Put(context.Background(), entry(id, "x")); !errors.Is(err, ErrInvalidID) {
			t.Errorf("put %q: %v, want ErrInvalidID", id, err)
		}
	}
	mustPut(t, s, entry(strings.Repeat("a", MaxIDLength), "x"))
	mustPut(t, s, entry("id/with/slashes and ünicode", "x"))
	if st := s.Stats(); st.Messages != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	const n = 50
	clock := newFakeClock()
	s := openTest(t, dir, Options{Now: clock.Now})
	for i := range n {
		mustPut(t, s, entry(fmt.Sprintf("m%02d", i), fmt.Sprintf("payload %d", i)))
		clock.Advance(time.Millisecond)
	}
	for range 10 {
		mustNext(t, s) // leased, never finished
	}
	if err := s.MarkSent("m03", "alice@example.org", "ses-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent("m03", "bob@example.org", "ses-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry("m04", time.Time{}, "s3_timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), entry("late", "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}

	s = openTest(t, dir, Options{Now: clock.Now})
	if st := s.Stats(); st.Messages != n {
		t.Fatalf("after restart: %+v, want %d messages", st, n)
	}
	seen := map[string]int{}
	for range n {
		e := mustNext(t, s)
		seen[e.ID]++
		if want := fmt.Sprintf("payload %s", strings.TrimPrefix(strings.TrimPrefix(e.ID, "m"), "0")); string(e.Payload) != want {
			t.Errorf("%s: payload %q, want %q", e.ID, e.Payload, want)
		}
		switch e.ID {
		case "m03":
			want := map[string]string{"alice@example.org": "ses-1", "bob@example.org": "ses-2"}
			if fmt.Sprint(e.Sent) != fmt.Sprint(want) {
				t.Errorf("m03 sent %v, want %v", e.Sent, want)
			}
		case "m04":
			if e.Attempts != 1 || e.LastError != "s3_timeout" {
				t.Errorf("m04: attempts %d last error %q", e.Attempts, e.LastError)
			}
		}
	}
	for i := range n {
		if id := fmt.Sprintf("m%02d", i); seen[id] != 1 {
			t.Errorf("%s returned %d times", id, seen[id])
		}
	}
	mustBeEmpty(t, s)
}

func TestRetryOrdering(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Now: clock.Now})
	for _, id := range []string{"a", "b", "c"} {
		mustPut(t, s, entry(id, id))
		clock.Advance(time.Second)
	}
	if e := mustNext(t, s); e.ID != "a" {
		t.Fatalf("next %q, want a", e.ID)
	}
	if err := s.Retry("a", clock.Now().Add(time.Hour), "ses_throttled"); err != nil {
		t.Fatal(err)
	}
	if e := mustNext(t, s); e.ID != "b" {
		t.Fatalf("next %q, want b", e.ID)
	}
	if err := s.Retry("b", clock.Now().Add(30*time.Minute), "ses_throttled"); err != nil {
		t.Fatal(err)
	}
	if e := mustNext(t, s); e.ID != "c" {
		t.Fatalf("next %q, want c", e.ID)
	}
	if err := s.Complete("c"); err != nil {
		t.Fatal(err)
	}
	mustBeEmpty(t, s) // a and b are waiting for their time

	clock.Advance(30 * time.Minute)
	e := mustNext(t, s)
	if e.ID != "b" || e.Attempts != 1 || e.LastError != "ses_throttled" {
		t.Fatalf("next %+v, want b after 1 attempt", e)
	}
	mustBeEmpty(t, s)
	clock.Advance(30 * time.Minute)
	if e := mustNext(t, s); e.ID != "a" {
		t.Fatalf("next %q, want a", e.ID)
	}
	if err := s.Retry("nope", time.Time{}, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retry unknown: %v", err)
	}
	if err := s.MarkSent("nope", "k", "v"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("mark sent unknown: %v", err)
	}
}

// TestRetryTimer checks that a Next blocked on an entry that is not yet due
// returns it once its time arrives (real clock, short duration).
func TestRetryTimer(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustPut(t, s, entry("a", "x"))
	mustNext(t, s)
	at := time.Now().Add(150 * time.Millisecond)
	if err := s.Retry("a", at, "later"); err != nil {
		t.Fatal(err)
	}
	e := mustNext(t, s)
	if now := time.Now(); e.ID != "a" || now.Before(at) {
		t.Fatalf("next %q at %v, due at %v", e.ID, now, at)
	}
}

// waitForWaiters waits until n Next calls are blocked.
func waitForWaiters(t *testing.T, s *Spool, n int) {
	t.Helper()
	for range 5000 {
		s.mu.Lock()
		w := s.waiters
		s.mu.Unlock()
		if w >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d Next calls blocked", n)
}

func TestWakeOnPut(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		e   Entry
		err error
	}
	c := make(chan result, 1)
	go func() {
		e, err := s.Next(ctx)
		c <- result{e, err}
	}()
	waitForWaiters(t, s, 1)
	mustPut(t, s, entry("a", "hello"))
	r := <-c
	if r.err != nil || r.e.ID != "a" || string(r.e.Payload) != "hello" {
		t.Fatalf("next: %+v, %v", r.e, r.err)
	}
}

func TestCloseUnblocksNext(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := s.Next(context.Background())
			errc <- err
		}()
	}
	waitForWaiters(t, s, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("next: %v, want ErrClosed", err)
		}
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("next after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestDeadLetterRedrive(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openTest(t, dir, Options{Now: clock.Now})
	for _, id := range []string{"a", "b", "c"} {
		mustPut(t, s, entry(id, "payload "+id))
	}
	// Dead-letter c first, then a: oldest first means c, a.
	for _, id := range []string{"a", "b", "c"} {
		mustNext(t, s)
		_ = id
	}
	if err := s.MarkSent("a", "k1", "ses-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry("a", time.Time{}, "transient"); err != nil {
		t.Fatal(err)
	}
	if e := mustNext(t, s); e.ID != "a" {
		t.Fatalf("next %q", e.ID)
	}
	if err := s.DeadLetter("c", "parse_error"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if err := s.DeadLetter("a", "no_route"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter("a", "again"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dead-letter twice: %v", err)
	}
	if st := s.Stats(); st.Messages != 1 || st.DeadLetters != 2 {
		t.Fatalf("stats %+v", st)
	}

	dls, err := s.DeadLetters(0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dl := range dls {
		got = append(got, dl.ID+":"+dl.Reason)
	}
	if want := []string{"c:parse_error", "a:no_route"}; !slices.Equal(got, want) {
		t.Fatalf("dead letters %v, want %v", got, want)
	}
	if !dls[1].DeadAt.Equal(clock.Now()) || string(dls[1].Payload) != "payload a" || dls[1].Attempts != 1 || dls[1].Sent["k1"] != "ses-a" {
		t.Fatalf("dead letter a: %+v", dls[1])
	}
	if dls, err := s.DeadLetters(1); err != nil || len(dls) != 1 || dls[0].ID != "c" {
		t.Fatalf("dead letters limit 1: %+v, %v", dls, err)
	}

	// Survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Options{Now: clock.Now})
	if st := s.Stats(); st.Messages != 1 || st.DeadLetters != 2 {
		t.Fatalf("stats after restart %+v", st)
	}

	n, err := s.Redrive("a", "zzz")
	if n != 1 || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "zzz") {
		t.Fatalf("redrive a, zzz: %d, %v", n, err)
	}
	e := mustNext(t, s) // a is due now; b (released by the restart) was enqueued earlier but is due at its enqueue time
	if e.ID != "b" {
		t.Fatalf("next %q, want b", e.ID)
	}
	e = mustNext(t, s)
	if e.ID != "a" || e.Attempts != 0 || e.Sent["k1"] != "ses-a" || string(e.Payload) != "payload a" {
		t.Fatalf("redriven a: %+v", e)
	}
	if n, err := s.Redrive(); n != 1 || err != nil {
		t.Fatalf("redrive all: %d, %v", n, err)
	}
	if e := mustNext(t, s); e.ID != "c" {
		t.Fatalf("next %q, want c", e.ID)
	}
	if st := s.Stats(); st.Messages != 3 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n, err := s.Redrive(); n != 0 || err != nil {
		t.Fatalf("redrive with none: %d, %v", n, err)
	}
	if n, err := s.Redrive("c"); n != 0 || !errors.Is(err, ErrNotFound) {
		t.Fatalf("redrive pending id: %d, %v", n, err)
	}
}

// TestRedriveAboveBound checks that dead letters count toward the bounds
// (Full, Put) and that Redrive, which ignores the bounds, keeps the total.
func TestRedriveAboveBound(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MaxMessages: 3})
	mustPut(t, s, entry("a", "x"))
	mustNext(t, s)
	if err := s.DeadLetter("a", "bad"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, entry("b", "x"))
	mustPut(t, s, entry("c", "x"))
	if !s.Full() {
		t.Fatal("2 pending + 1 dead letter with MaxMessages 3: not full")
	}
	if _, err := s.Put(context.Background(), entry("d", "x")); !errors.Is(err, ErrFull) {
		t.Fatalf("put at the bound with a dead letter: %v", err)
	}
	if n, err := s.Redrive("a"); n != 1 || err != nil {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	if st := s.Stats(); st.Messages != 3 || !s.Full() {
		t.Fatalf("stats %+v full %v; want 3 messages, over the bound", st, s.Full())
	}
	if _, err := s.Put(context.Background(), entry("d", "x")); !errors.Is(err, ErrFull) {
		t.Fatalf("put above bound: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	const (
		producers = 32
		perProd   = 50
		unique    = 1000 // ids are shared between producers: 1600 puts of 1000 ids
		consumers = 4
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		mu       sync.Mutex
		consumed = map[string]int{}
		stored   = map[string]int{}
		total    int
		wg       sync.WaitGroup
		errs     = make(chan error, producers+consumers)
	)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProd {
				id := fmt.Sprintf("m%04d", (p*perProd+i)%unique)
				dup, err := s.Put(ctx, entry(id, "payload "+id))
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", id, err)
					return
				}
				if !dup {
					mu.Lock()
					stored[id]++
					mu.Unlock()
				}
			}
		}()
	}
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	var cwg sync.WaitGroup
	for range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				e, err := s.Next(cctx)
				if err != nil {
					if cctx.Err() == nil {
						errs <- fmt.Errorf("next: %w", err)
					}
					return
				}
				if string(e.Payload) != "payload "+e.ID {
					errs <- fmt.Errorf("%s: payload %q", e.ID, e.Payload)
				}
				if err := s.Complete(e.ID); err != nil {
					errs <- fmt.Errorf("complete %s: %w", e.ID, err)
					return
				}
				mu.Lock()
				consumed[e.ID]++
				total++
				done := total == unique
				mu.Unlock()
				if done {
					ccancel()
				}
			}
		}()
	}
	wg.Wait()
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("timed out: consumed %d of %d", total, unique)
	}
	if len(consumed) != unique || len(stored) != unique {
		t.Fatalf("consumed %d ids, stored %d, want %d", len(consumed), len(stored), unique)
	}
	for id, n := range consumed {
		if n != 1 || stored[id] != 1 {
			t.Errorf("%s consumed %d times, stored %d times", id, n, stored[id])
		}
	}
	if st := s.Stats(); st.Messages != 0 || st.Bytes != 0 {
		t.Fatalf("stats after draining %+v", st)
	}
}

// TestConcurrentSameID puts one ID from many goroutines at once: exactly one
// stores it.
func TestConcurrentSameID(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	const n = 16
	var wg sync.WaitGroup
	dups := make(chan bool, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup, err := s.Put(context.Background(), entry("same", "x"))
			if err != nil {
				t.Error(err)
			}
			dups <- dup
		}()
	}
	wg.Wait()
	close(dups)
	stored := 0
	for d := range dups {
		if !d {
			stored++
		}
	}
	if stored != 1 || s.Stats().Messages != 1 {
		t.Fatalf("stored %d times, stats %+v", stored, s.Stats())
	}
}

func TestRecords(t *testing.T) {
	for _, tc := range []struct {
		exp uint64
		id  string
	}{{0, "a"}, {1 << 40, "9f1c2d3e-uuid"}, {1, ""}} {
		k := expiryKey(tc.exp, tc.id)
		exp, id, err := parseExpiryKey(k)
		if err != nil || exp != tc.exp || id != tc.id {
			t.Errorf("expiry key %v %q: got %v %q %v", tc.exp, tc.id, exp, id, err)
		}
	}
	if _, _, err := parseExpiryKey([]byte("x/123")); err == nil {
		t.Error("short expiry key parsed")
	}
	// Keys sort by expiry.
	if string(expiryKey(255, "z")) >= string(expiryKey(256, "a")) {
		t.Error("expiry keys do not sort by time")
	}
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{{"1700000000", 1700000000, true}, {"", 0, false}, {"-1", 0, false}, {"12a", 0, false}} {
		got, err := parseExpiry([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseExpiry(%q) = %v, %v", tc.in, got, err)
		}
	}
	now := time.Unix(100, 1)
	if got := expiryAt(now, time.Second); got != 102 {
		t.Errorf("expiryAt rounds to %d, want 102", got)
	}
	if got := expiryAt(time.Unix(100, 0), time.Second); got != 101 {
		t.Errorf("expiryAt exact = %d, want 101", got)
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"id":"a","payload":"aGk="}`, true},
		{`{"id":"","payload":"aGk="}`, false},
		{`{"id":"a","payload":"!!"}`, false},
		{`not json`, false},
	} {
		if _, err := decodeEntry([]byte(tc.in)); (err == nil) != tc.ok {
			t.Errorf("decodeEntry(%s): %v", tc.in, err)
		}
	}
}

func FuzzRecords(f *testing.F) {
	f.Add([]byte(`{"id":"a","payload":"aGk=","attempts":2,"sent":{"k":"v"}}`), "a", uint64(1700000000))
	f.Add([]byte(`{"id":"","payload":"aGk="}`), "", uint64(0))
	f.Add([]byte(`1700000000`), "a\x00b", uint64(1<<63))
	f.Add([]byte(`{"id":"a","reason":"x","dead_at":"2025-01-01T00:00:00Z"}`), "id/with/slash", uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, id string, exp uint64) {
		if e, err := decodeEntry(data); err == nil && checkID(e.ID) != nil {
			t.Fatalf("decoded entry with invalid id %q", e.ID)
		}
		if dl, err := decodeDeadLetter(data); err == nil && checkID(dl.ID) != nil {
			t.Fatalf("decoded dead letter with invalid id %q", dl.ID)
		}
		if v, err := parseExpiry(data); err == nil {
			if w, err := parseExpiry(encodeExpiry(v)); err != nil || w != v {
				t.Fatalf("expiry %d does not round-trip: %d %v", v, w, err)
			}
		}
		parseExpiryKey(data)
		if checkID(id) != nil {
			return
		}
		gexp, gid, err := parseExpiryKey(expiryKey(exp, id))
		if err != nil || gexp != exp || gid != id {
			t.Fatalf("expiry key round trip: %d %q %v", gexp, gid, err)
		}
	})
}

// A dead letter is visible to DeadLetters as soon as its write lands, a
// moment before DeadLetter returns; a redrive in that moment must find it.
func TestRedriveRightAfterDeadLetter(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 50 {
		id := fmt.Sprintf("race-%d", i)
		if _, err := s.Put(ctx, Entry{ID: id, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		e, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.DeadLetter(e.ID, "test") }()
		// Redrive as soon as the dead letter can be listed.
		for {
			dls, err := s.DeadLetters(0)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) == 1 {
				break
			}
		}
		if n, err := s.Redrive(id); err != nil || n != 1 {
			t.Fatalf("redrive %s = %d, %v", id, n, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		e, err = s.Next(ctx)
		if err != nil || e.ID != id {
			t.Fatalf("next after redrive = %q, %v", e.ID, err)
		}
		if err := s.Complete(e.ID); err != nil {
			t.Fatal(err)
		}
	}
}
