package spool

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// deadLetterN puts, leases and dead-letters n entries d0..d<n-1> with the
// given payload, one clock step apart (so d0 is the oldest).
func deadLetterN(t *testing.T, s *Spool, clock *fakeClock, n int, payload string) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("d%d", i)
		mustPut(t, s, entry(id, payload))
		if e := mustNext(t, s); e.ID != id {
			t.Fatalf("next %q, want %q", e.ID, id)
		}
		if err := s.DeadLetter(id, "bad"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
}

func deadIDList(t *testing.T, s *Spool) []string {
	t.Helper()
	dls, err := s.DeadLetters(0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, dl := range dls {
		ids = append(ids, dl.ID)
	}
	return ids
}

// TestDeadLetterBounds checks that dead letters over a bound (count, bytes,
// age) expire oldest first, at insertion or by the prune pass, are counted
// in Stats and by OnDeadLettersExpired, and that the index survives a reopen.
func TestDeadLetterBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		n       int
		advance time.Duration // then expireDead, as pruneLoop does
		want    []string
	}{
		{name: "count", opts: Options{MaxDeadLetters: 3}, n: 5, want: []string{"d2", "d3", "d4"}},
		{name: "bytes", opts: Options{MaxDeadLetterBytes: 25}, n: 5, want: []string{"d3", "d4"}}, // 10 bytes each
		{name: "age", opts: Options{MaxDeadLetterAge: time.Hour}, n: 4, advance: time.Hour - 2*time.Second,
			want: []string{"d2", "d3"}},
		{name: "within bounds", opts: Options{}, n: 4, advance: time.Hour, want: []string{"d0", "d1", "d2", "d3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newFakeClock()
			var expired atomic.Int64
			opts := tc.opts
			opts.Now = clock.Now
			opts.OnDeadLettersExpired = func(n int) { expired.Add(int64(n)) }
			s := openTest(t, dir, opts)
			deadLetterN(t, s, clock, tc.n, "0123456789")
			clock.Advance(tc.advance)
			if _, err := s.expireDead(); err != nil {
				t.Fatal(err)
			}
			got := deadIDList(t, s)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("dead letters %v, want %v", got, tc.want)
			}
			gone := tc.n - len(tc.want)
			st := s.Stats()
			if st.DeadLetters != len(tc.want) || st.DeadLetterBytes != int64(10*len(tc.want)) ||
				st.DeadLettersExpired != uint64(gone) || expired.Load() != int64(gone) {
				t.Fatalf("stats %+v, expired callback %d; want %d dead letters, %d expired", st, expired.Load(), len(tc.want), gone)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir, opts)
			if st := s.Stats(); st.DeadLetters != len(tc.want) || st.DeadLetterBytes != int64(10*len(tc.want)) {
				t.Fatalf("stats after reopen %+v", st)
			}
			// An expired ID is no longer a duplicate.
			if gone > 0 {
				if dup, err := s.Put(context.Background(), entry("d0", "x")); dup || err != nil {
					t.Fatalf("put of an expired dead letter's id: %v, %v", dup, err)
				}
			}
		})
	}
}

// TestFullCountsDeadLetters checks that dead letters count toward the
// spool's bounds in Full (the report: 50 dead letters held while Full said
// false) and so in Put.
func TestFullCountsDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"messages", Options{MaxMessages: 3}},
		{"bytes", Options{MaxBytes: 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			opts := tc.opts
			opts.Now = clock.Now
			s := openTest(t, t.TempDir(), opts)
			deadLetterN(t, s, clock, 3, "0123456789")
			if st := s.Stats(); st.Messages != 0 || !s.Full() {
				t.Fatalf("3 dead letters at the bound: stats %+v, full %v", st, s.Full())
			}
			if _, err := s.Put(context.Background(), entry("x", "0123456789")); err == nil {
				t.Fatal("put at the bound succeeded")
			}
		})
	}
}
