package spool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashDurability runs a sequence of spool calls on a file system that
// can simulate a crash (vfs.NewCrashableMem: CrashClone keeps only what was
// synced, plus a random share of the rest), reopens the clone and checks
// what the durability notes on Spool promise: every acknowledged Put is
// there (pending or finished), an entry still pending after MarkSent
// returned keeps its sent-record, and a Complete followed by a synced
// commit stays done. It fails if Put or MarkSent stop syncing, or Complete
// loses a record that a later sync should have kept.
func TestCrashDurability(t *testing.T) {
	ctx := context.Background()
	type step struct {
		op string // put, send (Next+MarkSent), complete
		id string
	}
	tests := []struct {
		name  string
		steps []step
		// after the crash, with no unsynced data kept
		pending    []string // pending, and if sent, with its record
		sent       []string // pending with a sent-record
		duplicates []string // a new Put of these is a duplicate (finished or pending)
		fresh      []string // a new Put of these is stored
	}{
		{
			name:    "acknowledged put survives",
			steps:   []step{{"put", "a"}},
			pending: []string{"a"}, duplicates: []string{"a"},
		},
		{
			name:    "unsynced complete lost, sent-record kept",
			steps:   []step{{"put", "a"}, {"send", "a"}, {"complete", "a"}},
			pending: []string{"a"}, sent: []string{"a"},
		},
		{
			name:    "complete made durable by the next put",
			steps:   []step{{"put", "a"}, {"send", "a"}, {"complete", "a"}, {"put", "b"}},
			pending: []string{"b"}, duplicates: []string{"a", "b"},
		},
		{
			name:    "complete made durable by another entry's sent-record",
			steps:   []step{{"put", "a"}, {"put", "b"}, {"send", "a"}, {"complete", "a"}, {"send", "b"}},
			pending: []string{"b"}, sent: []string{"b"}, duplicates: []string{"a"}, fresh: []string{"c"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			s, err := Open("spool", Options{Logger: quietLogger(), fs: mem, ReserveBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, st := range tc.steps {
				switch st.op {
				case "put":
					if dup, err := s.Put(ctx, entry(st.id, "payload "+st.id)); err != nil || dup {
						t.Fatalf("put %s: dup %v, %v", st.id, dup, err)
					}
				case "send":
					e, err := s.Next(ctx)
					if err != nil || e.ID != st.id {
						t.Fatalf("next: %q, %v; want %s", e.ID, err, st.id)
					}
					if err := s.MarkSent(st.id, "k", "ses-"+st.id); err != nil {
						t.Fatal(err)
					}
				case "complete":
					if err := s.Complete(st.id); err != nil {
						t.Fatal(err)
					}
				}
			}
			crashed := mem.CrashClone(vfs.CrashCloneCfg{})
			r, err := Open("spool", Options{Logger: quietLogger(), fs: crashed, ReserveBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := map[string]Entry{}
			for range r.Stats().Messages {
				e, err := r.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got[e.ID] = e
			}
			if len(got) != len(tc.pending) {
				t.Errorf("pending after the crash: %v, want %v", keys(got), tc.pending)
			}
			for _, id := range tc.pending {
				if _, ok := got[id]; !ok {
					t.Errorf("%s not pending after the crash", id)
				}
			}
			for _, id := range tc.sent {
				if got[id].Sent["k"] != "ses-"+id {
					t.Errorf("%s: sent-record %v after the crash, want k=ses-%s", id, got[id].Sent, id)
				}
			}
			for _, id := range tc.duplicates {
				if dup, err := r.Put(ctx, entry(id, "again")); err != nil || !dup {
					t.Errorf("put %s again after the crash: dup %v, %v; want a duplicate", id, dup, err)
				}
			}
			for _, id := range tc.fresh {
				if dup, err := r.Put(ctx, entry(id, "new")); err != nil || dup {
					t.Errorf("put %s after the crash: dup %v, %v; want stored", id, dup, err)
				}
			}
		})
	}
}

// TestCrashRandom runs many mails' lives (Put, Next, MarkSent, Complete)
// with a crash at a random point keeping a random share of the unsynced
// writes, and checks the bound on Spool: nothing acknowledged is lost, and
// no copy is recorded sent and then found pending without its record (which
// would send it again).
func TestCrashRandom(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 13))
			mem := vfs.NewCrashableMem()
			s, err := Open("spool", Options{Logger: quietLogger(), fs: mem, ReserveBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			acked, sent := map[string]bool{}, map[string]bool{}
			n := 20 + rng.IntN(60)
			for i := range n {
				id := fmt.Sprintf("m%03d", i)
				if _, err := s.Put(ctx, entry(id, "p")); err != nil {
					t.Fatal(err)
				}
				acked[id] = true
				if rng.IntN(4) == 0 {
					continue // left pending
				}
				e, err := s.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.MarkSent(e.ID, "k", "ses"); err != nil {
					t.Fatal(err)
				}
				sent[e.ID] = true
				if rng.IntN(3) > 0 {
					if err := s.Complete(e.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			rs := rand.New(rand.NewPCG(seed, 1))
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rs})
			r, err := Open("spool", Options{Logger: quietLogger(), fs: crashed, ReserveBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			pending := map[string]Entry{}
			for range r.Stats().Messages {
				e, err := r.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pending[e.ID] = e
			}
			for id := range acked {
				e, isPending := pending[id]
				if isPending {
					if sent[id] && e.Sent["k"] == "" {
						t.Errorf("%s: sent, but pending without its sent-record after the crash (would be sent again)", id)
					}
					continue
				}
				// Not pending: it must be finished (its marker dedupes it).
				if dup, err := r.Put(ctx, entry(id, "again")); err != nil || !dup {
					t.Errorf("%s acknowledged, then neither pending nor finished after the crash (dup %v, %v)", id, dup, err)
				}
			}
		})
	}
}

func keys(m map[string]Entry) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	return l
}
