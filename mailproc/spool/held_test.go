package spool

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestHeldEntries(t *testing.T) {
	tests := []struct {
		name     string
		sent     bool
		forget   bool
		wantKept bool
	}{
		{"forget unsent", false, true, false},
		{"forget keeps sent record", true, true, true},
		{"kept without forget", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{ReserveBytes: -1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(context.Background(), Entry{ID: "h1", Payload: []byte("x"), NextAttempt: HeldDue}); err != nil {
				t.Fatal(err)
			}
			if tt.sent {
				if err := s.MarkSent("h1", "k", "ses-1"); err != nil {
					t.Fatal(err)
				}
			}
			if tt.forget {
				if err := s.Forget("h1"); err != nil {
					t.Fatal(err)
				}
			}
			// Reopened: a held entry is never handed out by Next.
			s.Close()
			if s, err = Open(dir, Options{ReserveBytes: -1}); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if e, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Next handed out %+v (%v)", e, err)
			}
			e, err := s.Pending("h1")
			if kept := err == nil; kept != tt.wantKept {
				t.Fatalf("kept = %v (%v), want %v", kept, err, tt.wantKept)
			}
			if tt.wantKept && (!Held(e) || tt.sent && e.Sent["k"] != "ses-1") {
				t.Fatalf("entry %+v", e)
			}
			if dup, err := s.Put(context.Background(), Entry{ID: "h1", Payload: []byte("x"), NextAttempt: HeldDue}); err != nil || dup != tt.wantKept {
				t.Fatalf("Put again: dup %v, %v", dup, err)
			}
		})
	}
}

func TestDropHeld(t *testing.T) {
	s, err := Open(t.TempDir(), Options{ReserveBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := time.Now().Add(-72 * time.Hour)
	for _, e := range []Entry{
		{ID: "old-held", EnqueuedAt: old, NextAttempt: HeldDue},
		{ID: "old-busy", EnqueuedAt: old, NextAttempt: HeldDue},
		{ID: "new-held", NextAttempt: HeldDue},
		{ID: "old-spool", EnqueuedAt: old}, // the spool's own: never dropped
	} {
		e.Payload = []byte("x")
		if _, err := s.Put(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DropHeld(time.Now().Add(-48*time.Hour), 100, func(id string) bool { return id == "old-busy" })
	if err != nil || n != 1 {
		t.Fatalf("dropped %d, %v; want 1", n, err)
	}
	for id, want := range map[string]bool{"old-held": false, "old-busy": true, "new-held": true, "old-spool": true} {
		if _, err := s.Pending(id); (err == nil) != want {
			t.Errorf("%s pending = %v, want %v", id, err == nil, want)
		}
	}
}
