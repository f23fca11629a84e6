package feedback_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
)

// TestComplaintDisable: three complaints disable a managed alias in the
// alias store (the alias API shows it, enable lifts it) and a file alias
// in the feedback state (shown disabled, enable lifts that too).
func TestComplaintDisable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	table, err := aliases.Parse([]byte(aliasYAML))
	if err != nil {
		t.Fatal(err)
	}
	adb, err := aliasdb.OpenSQLite(ctx, filepath.Join(dir, "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer adb.Close()
	file := func() *aliases.Table { return table }
	resolver := aliases.NewCombined(file, adb, aliases.CombinedOptions{})
	manager := aliases.NewManager(file, adb, resolver)
	if _, err := manager.Create(ctx, []string{"erin@example.org"}, "", "club@relay.example.com", ""); err != nil {
		t.Fatal(err)
	}
	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := feedback.NewHandler(feedback.Options{
		Store: store, Aliases: resolver, AliasStates: manager, ComplaintsDisable: 3,
		Now: func() time.Time { return now },
	})
	api := feedback.NewAliasAdmin(manager, h)

	for _, tc := range []struct {
		alias        string
		managedState aliases.State // the alias store's state after the complaints ("": a file alias)
		feedbackDis  bool          // disabled in the feedback state
	}{
		{"club@relay.example.com", aliases.StateDisabled, false},
		{"shop@relay.example.com", "", true},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			for i, id := range []string{"a", "b", "c"} {
				if got, _ := h.Check(ctx, tc.alias, []string{"x@example.org"}, true); got != "" {
					t.Fatalf("before complaint %d: Check = %q", i+1, got)
				}
				if err := h.Record(ctx, complaint(tc.alias+id, tc.alias)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.managedState != "" {
				a, err := adb.Get(ctx, tc.alias)
				if err != nil || a.State != tc.managedState {
					t.Fatalf("alias store: %+v, %v; want state %s", a, err, tc.managedState)
				}
				r, err := resolver.Resolve(ctx, tc.alias)
				if err != nil || r.State != aliases.StateDisabled {
					t.Errorf("resolver (cache emptied): %+v, %v", r, err)
				}
			}
			if d, err := store.AliasDisabled(ctx, tc.alias); err != nil || d != tc.feedbackDis {
				t.Errorf("feedback state disabled = %v, %v; want %v", d, err, tc.feedbackDis)
			}
			shown, err := api.Get(ctx, tc.alias)
			if err != nil || shown.State != aliases.StateDisabled {
				t.Errorf("alias show: %+v, %v; want disabled", shown, err)
			}
			list, err := api.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range list {
				if a.Address == tc.alias && a.State != aliases.StateDisabled {
					t.Errorf("alias list shows %s %s", a.Address, a.State)
				}
			}
			// alias enable lifts it (whichever store holds it).
			a, err := api.SetState(ctx, tc.alias, aliases.StateEnabled)
			if err != nil || a.State != aliases.StateEnabled {
				t.Fatalf("enable: %+v, %v", a, err)
			}
			if d, _ := store.AliasDisabled(ctx, tc.alias); d {
				t.Error("feedback disable not lifted by enable")
			}
			if got, _ := h.Check(ctx, tc.alias, []string{"x@example.org"}, true); got != "" {
				t.Errorf("after enable: Check = %q", got)
			}
			// A file alias with nothing to lift stays read-only.
			if tc.managedState == "" {
				if _, err := api.SetState(ctx, tc.alias, aliases.StateEnabled); !errors.Is(err, aliases.ErrReadOnly) {
					t.Errorf("enable again: %v, want ErrReadOnly", err)
				}
			}
		})
	}
	if got, err := h.Check(ctx, "news@relay.example.com", nil, true); err != nil || got != "" {
		t.Errorf("untouched alias: %q %v", got, err)
	}
}

// TestDestinations: the admin view of paused destinations.
func TestDestinations(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := feedback.NewHandler(feedback.Options{Store: store, Aliases: table, PauseSoft: time.Hour, Now: func() time.Time { return now }})
	if err := h.Record(ctx, bounce("Permanent", "news@relay.example.com", "Bob@example.org")); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(ctx, bounce("Transient", "news@relay.example.com", "carol@example.org")); err != nil {
		t.Fatal(err)
	}
	l, err := h.PausedDestinations(ctx)
	if err != nil || len(l) != 2 {
		t.Fatalf("paused: %+v, %v", l, err)
	}
	p, ok, err := h.Destination(ctx, " BOB@example.org")
	if err != nil || !ok || p.Kind != feedback.BouncePermanent || !p.Until.Equal(now.Add(feedback.DefaultPauseHard)) {
		t.Errorf("bob: %+v %v %v", p, ok, err)
	}
	for _, c := range []struct {
		addr string
		want bool
	}{{"bob@example.org", true}, {"bob@example.org", false}, {"nobody@example.org", false}} {
		if ok, err := h.Unpause(ctx, c.addr); err != nil || ok != c.want {
			t.Errorf("Unpause(%s) = %v, %v; want %v", c.addr, ok, err, c.want)
		}
	}
	if got, _ := h.Check(ctx, "news@relay.example.com", []string{"bob@example.org"}, true); got != "" {
		t.Errorf("after unpause: %q", got)
	}
	now = now.Add(2 * time.Hour)
	if l, err := h.PausedDestinations(ctx); err != nil || len(l) != 0 {
		t.Errorf("after the soft pause ended: %+v, %v", l, err)
	}
}
