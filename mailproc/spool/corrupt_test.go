package spool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestCorruptEntryAtOpen checks that Open moves undecodable pending records
// (and one stored under an invalid ID) to the dead letters with their raw
// bytes as payload, and resumes the good ones.
func TestCorruptEntryAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	mustPut(t, s, entry("good", "g"))
	for k, v := range map[string]string{
		"q/bad":       "not json",
		"q/other":     `{"id":"mismatch","payload":""}`,
		"q/nul\x00id": `{"id":"nul\u0000id"}`,
	} {
		if err := s.db.Set([]byte(k), []byte(v), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, dir, Options{})
	if st := s.Stats(); st.Messages != 1 || st.DeadLetters != 3 {
		t.Fatalf("stats after reopen: %+v, want 1 pending and 3 dead letters", st)
	}
	dls, err := s.DeadLetters(0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, dl := range dls {
		if dl.Reason != "spool_corrupt_entry" || dl.DeadAt.IsZero() {
			t.Errorf("dead letter %q: reason %q, dead at %v", dl.ID, dl.Reason, dl.DeadAt)
		}
		got[dl.ID] = string(dl.Payload)
	}
	want := map[string]string{
		"bad":                                  "not json",
		"other":                                `{"id":"mismatch","payload":""}`,
		fmt.Sprintf("corrupt-%x", "nul\x00id"): `{"id":"nul\u0000id"}`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dead letters %v, want %v", got, want)
	}
	if e := mustNext(t, s); e.ID != "good" {
		t.Fatalf("next: %q, want good", e.ID)
	}
	// A redriven corrupt record is pending again, and found corrupt again
	// when leased.
	if n, err := s.Redrive("bad"); n != 1 || err != nil {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	if st := s.Stats(); st.Messages != 2 {
		t.Fatalf("stats after redrive: %+v", st)
	}
	if dls, err := s.DeadLetters(0); err != nil || len(dls) != 2 {
		t.Fatalf("dead letters after redrive: %d, %v", len(dls), err)
	}
	if st := s.Stats(); st.DeadLetters != 2 {
		t.Fatalf("stats after redrive: %+v, want 2 dead letters", st)
	}
	// Counted once across another reopen too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Options{})
	if st := s.Stats(); st.DeadLetters != 2 {
		t.Fatalf("stats after second reopen: %+v, want 2 dead letters", st)
	}
}

// TestCorruptEntryAtNext checks that Next moves a pending record that no
// longer decodes to the dead letters and goes on with the next entry.
// The record is corrupted behind the spool's back, so the entry cache is
// off: a cached entry is handed out as Put stored it.
func TestCorruptEntryAtNext(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{CacheBytes: -1})
	mustPut(t, s, entry("a", "1"))
	mustPut(t, s, entry("b", "2"))
	if err := s.db.Set([]byte("q/a"), []byte("garbage"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if e := mustNext(t, s); e.ID != "b" {
		t.Fatalf("next: %q, want b", e.ID)
	}
	if st := s.Stats(); st.Messages != 1 || st.DeadLetters != 1 {
		t.Fatalf("stats: %+v", st)
	}
	dls, err := s.DeadLetters(0)
	if err != nil || len(dls) != 1 || dls[0].ID != "a" || string(dls[0].Payload) != "garbage" {
		t.Fatalf("dead letters: %+v, %v", dls, err)
	}
	// Still a duplicate while dead-lettered.
	if dup, err := s.Put(context.Background(), entry("a", "1")); !dup || err != nil {
		t.Fatalf("put a again: %v, %v", dup, err)
	}
	// Operations on it report it not pending.
	if err := s.Retry("a", time.Time{}, "x"); err == nil {
		t.Fatal("retry of a dead-lettered entry succeeded")
	}
}
