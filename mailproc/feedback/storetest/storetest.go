// Package storetest is the table tests every feedback.Store passes (the
// embedded SQLite store and the PostgreSQL one): the same behaviour on
// both backends, including what survives a reopen and what two stores on
// one database (two replicas) see of each other.
package storetest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// Backend returns a new store on one database; called again, another
// store on the same database (a reopen, or a second replica). Stores are
// closed by the backend's cleanup.
type Backend func(t *testing.T) feedback.Store

// Run runs the tests; newBackend makes a fresh, empty database per test.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open Backend)
	}{
		{"Pauses", pauses},
		{"ComplaintsAndDisabledAliases", complaints},
		{"DailySends", dailySends},
		{"SharedByTwoStores", shared},
		{"Load", load},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBackend(t)) })
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func pauses(t *testing.T, open Backend) {
	s := open(t)
	ctx := context.Background()
	steps := []struct {
		name   string
		pause  *feedback.Pause
		now    time.Time
		want   time.Time // zero: not paused
		listed int
	}{
		{"none", nil, t0, time.Time{}, 0},
		{"soft", &feedback.Pause{Address: "a@x", Until: t0.Add(24 * time.Hour), Kind: feedback.BounceTransient, Since: t0, Reason: "General"}, t0, t0.Add(24 * time.Hour), 1},
		{"hard extends", &feedback.Pause{Address: "a@x", Until: t0.Add(720 * time.Hour), Kind: feedback.BouncePermanent, Since: t0, Reason: "NoEmail"}, t0, t0.Add(720 * time.Hour), 1},
		{"soft does not shorten", &feedback.Pause{Address: "a@x", Until: t0.Add(48 * time.Hour), Kind: feedback.BounceTransient, Since: t0.Add(time.Hour)}, t0, t0.Add(720 * time.Hour), 1},
		{"another", &feedback.Pause{Address: "b@x", Until: t0.Add(time.Hour), Kind: feedback.BounceTransient, Since: t0}, t0, t0.Add(720 * time.Hour), 2},
		{"expired is not paused", nil, t0.Add(721 * time.Hour), time.Time{}, 0},
	}
	for _, st := range steps {
		if st.pause != nil {
			if err := s.Pause(ctx, *st.pause); err != nil {
				t.Fatal(err)
			}
		}
		p, ok, err := s.Paused(ctx, "a@x", st.now)
		if err != nil {
			t.Fatal(err)
		}
		if ok != !st.want.IsZero() || ok && !p.Until.Equal(st.want) {
			t.Errorf("%s: paused %v until %v, want until %v", st.name, ok, p.Until, st.want)
		}
		l, err := s.ListPaused(ctx, st.now)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != st.listed {
			t.Errorf("%s: %d listed, want %d", st.name, len(l), st.listed)
		}
	}
	l, err := s.ListPaused(ctx, t0)
	if err != nil || len(l) != 2 {
		t.Fatalf("ListPaused = %+v, %v", l, err)
	}
	want := feedback.Pause{Address: "a@x", Until: t0.Add(720 * time.Hour), Kind: feedback.BouncePermanent, Since: t0, Reason: "NoEmail"}
	if got := l[0]; got.Address != want.Address || !got.Until.Equal(want.Until) || got.Kind != want.Kind || !got.Since.Equal(want.Since) || got.Reason != want.Reason {
		t.Errorf("first listed (ends last) = %+v, want %+v", got, want)
	}
	if l[1].Address != "b@x" {
		t.Errorf("second listed = %+v, want b@x", l[1])
	}
	if ok, err := s.Unpause(ctx, "a@x"); !ok || err != nil {
		t.Errorf("Unpause = %v, %v", ok, err)
	}
	if _, ok, _ := s.Paused(ctx, "a@x", t0); ok {
		t.Error("still paused after Unpause")
	}
	if ok, _ := s.Unpause(ctx, "a@x"); ok {
		t.Error("second Unpause found a pause")
	}
}

func complaints(t *testing.T, open Backend) {
	s := open(t)
	ctx := context.Background()
	since := t0.Add(-30 * 24 * time.Hour)
	for _, tc := range []struct {
		id   string
		at   time.Time
		want int
	}{
		{"f1", t0.Add(-40 * 24 * time.Hour), 0}, // too old to count
		{"f2", t0.Add(-time.Hour), 1},
		{"f2", t0.Add(-time.Hour), 1}, // the same feedback again
		{"f3", t0, 2},
	} {
		n, err := s.AddComplaint(ctx, "shop@relay", tc.id, tc.at, since)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("after %s: %d complaints, want %d", tc.id, n, tc.want)
		}
	}
	if n, err := s.Complaints(ctx, "other@relay", since); n != 0 || err != nil {
		t.Errorf("other alias has %d (%v)", n, err)
	}
	if err := s.DisableAlias(ctx, "shop@relay", t0, "3 complaints"); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableAlias(ctx, "shop@relay", t0.Add(time.Hour), "again"); err != nil {
		t.Fatal(err)
	}
	// The state survives a reopen (the migrations run again as no-ops).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t)
	if d, err := s2.AliasDisabled(ctx, "shop@relay"); !d || err != nil {
		t.Errorf("disabled = %v, %v", d, err)
	}
	if n, err := s2.Complaints(ctx, "shop@relay", since); n != 2 || err != nil {
		t.Errorf("complaints after reopen = %d, %v", n, err)
	}
	if d, _ := s2.AliasDisabled(ctx, "other@relay"); d {
		t.Error("other alias disabled")
	}
	if ok, _ := s2.EnableAlias(ctx, "shop@relay"); !ok {
		t.Error("EnableAlias found nothing")
	}
	if d, _ := s2.AliasDisabled(ctx, "shop@relay"); d {
		t.Error("still disabled")
	}
	if ok, _ := s2.EnableAlias(ctx, "shop@relay"); ok {
		t.Error("second EnableAlias found a disable")
	}
}

func dailySends(t *testing.T, open Backend) {
	s := open(t)
	ctx := context.Background()
	for _, tc := range []struct {
		addr, day string
		n, want   int
	}{
		{"a@x", "2026-03-01", 1, 1},
		{"a@x", "2026-03-01", 2, 3},
		{"b@x", "2026-03-01", 1, 1},
		{"a@x", "2026-03-02", 1, 1},
	} {
		got, err := s.AddSends(ctx, tc.addr, tc.day, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.addr, tc.day, got, tc.want)
		}
	}
	if n, _ := s.Sends(ctx, "a@x", "2026-03-01"); n != 3 {
		t.Errorf("Sends = %d", n)
	}
	if n, err := s.Sends(ctx, "c@x", "2026-03-01"); n != 0 || err != nil {
		t.Errorf("Sends of nobody = %d, %v", n, err)
	}
}

// Two stores on one database (two replicas): what one writes the other
// sees, and concurrent counts and complaints all add up.
func shared(t *testing.T, open Backend) {
	a, b := open(t), open(t)
	ctx := context.Background()
	if err := a.Pause(ctx, feedback.Pause{Address: "p@x", Until: t0.Add(time.Hour), Kind: feedback.BouncePermanent, Since: t0}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Paused(ctx, "p@x", t0); !ok || err != nil {
		t.Errorf("pause made on a not seen on b: %v, %v", ok, err)
	}
	const perStore = 20
	var wg sync.WaitGroup
	for i, s := range []feedback.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perStore {
				if _, err := s.AddSends(ctx, "d@x", "2026-03-01", 1); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.AddComplaint(ctx, "c@relay", fmt.Sprintf("fb-%d-%d", i, j%(perStore/2)), t0, t0.Add(-time.Hour)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, err := a.Sends(ctx, "d@x", "2026-03-01"); n != 2*perStore || err != nil {
		t.Errorf("sends counted by two stores at once = %d, %v; want %d", n, err, 2*perStore)
	}
	if n, err := b.Complaints(ctx, "c@relay", t0.Add(-time.Hour)); n != perStore || err != nil {
		t.Errorf("complaints = %d, %v; want %d (each feedback id once)", n, err, perStore)
	}
}

// Load reads what the checks need: expired pauses, complaints before
// since and other days' counts left out; what another store on the
// database wrote included.
func load(t *testing.T, open Backend) {
	a, b := open(t), open(t)
	ctx := context.Background()
	since := t0.Add(-30 * 24 * time.Hour)
	steps := []func() error{
		func() error { return a.DisableAlias(ctx, "off@relay", t0, "3 complaints") },
		func() error { return b.DisableAlias(ctx, "off2@relay", t0, "") },
		func() error { _, err := a.AddComplaint(ctx, "c@relay", "f1", t0.Add(-time.Hour), since); return err },
		func() error { _, err := b.AddComplaint(ctx, "c@relay", "f2", t0.Add(-2*time.Hour), since); return err },
		func() error {
			_, err := a.AddComplaint(ctx, "old@relay", "f3", since.Add(-time.Second), since)
			return err
		},
		func() error {
			return a.Pause(ctx, feedback.Pause{Address: "p@x", Until: t0.Add(time.Hour), Kind: feedback.BounceTransient, Since: t0})
		},
		func() error {
			return b.Pause(ctx, feedback.Pause{Address: "gone@x", Until: t0, Kind: feedback.BounceTransient, Since: t0.Add(-time.Hour)})
		},
		func() error { _, err := a.AddSends(ctx, "d@x", "2026-03-01", 3); return err },
		func() error { _, err := b.AddSends(ctx, "d@x", "2026-03-01", 2); return err },
		func() error { _, err := b.AddSends(ctx, "d@x", "2026-02-28", 7); return err },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		day  string
		want feedback.State
	}{
		{"with the day's counts", "2026-03-01", feedback.State{
			Disabled:   map[string]bool{"off@relay": true, "off2@relay": true},
			Complained: map[string]time.Time{"c@relay": t0.Add(-time.Hour)},
			Paused:     map[string]time.Time{"p@x": t0.Add(time.Hour)},
			Sends:      map[string]int{"d@x": 5},
		}},
		{"no counts asked", "", feedback.State{
			Disabled:   map[string]bool{"off@relay": true, "off2@relay": true},
			Complained: map[string]time.Time{"c@relay": t0.Add(-time.Hour)},
			Paused:     map[string]time.Time{"p@x": t0.Add(time.Hour)},
			Sends:      map[string]int{},
		}},
	} {
		for name, s := range map[string]feedback.Store{"a": a, "b": b} {
			got, err := s.Load(ctx, t0, since, tc.day)
			if err != nil {
				t.Fatal(err)
			}
			if !sameState(got, tc.want) {
				t.Errorf("%s: Load on %s = %+v, want %+v", tc.name, name, got, tc.want)
			}
		}
	}
}

func sameState(a, b feedback.State) bool {
	return maps.Equal(a.Disabled, b.Disabled) && maps.Equal(a.Sends, b.Sends) &&
		maps.EqualFunc(a.Complained, b.Complained, time.Time.Equal) && maps.EqualFunc(a.Paused, b.Paused, time.Time.Equal)
}
