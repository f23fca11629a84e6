package feedback_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// never is a Refresh no test reaches: the view is loaded once, so what a
// test sees after is the view's own doing.
const never = 100000 * time.Hour

// The view's times decide expiry at check time, without a reload: a
// pause's end, the complaint window, the day of the send counts.
func TestViewExpiry(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	t0 := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	now := t0
	h := feedback.NewHandler(feedback.Options{
		Store: store, Aliases: table, PauseSoft: time.Hour, DailyCap: 1, Refresh: never,
		Now: func() time.Time { return now },
	})
	if err := h.Record(ctx, bounce("Transient", "news@relay.example.com", "carol@example.org")); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(ctx, complaint("c1", "shop@relay.example.com")); err != nil {
		t.Fatal(err)
	}
	if err := h.Sent(ctx, []string{"dave@example.org"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at    time.Duration // after t0
		alias string
		dest  string
		spam  bool
		want  failure.Reason
	}{
		{0, "news@relay.example.com", "carol@example.org", true, failure.ReasonDestinationPaused},
		{59 * time.Minute, "news@relay.example.com", "carol@example.org", true, failure.ReasonDestinationPaused},
		{time.Hour, "news@relay.example.com", "carol@example.org", true, ""}, // the pause ends at t0+1h
		{0, "shop@relay.example.com", "alice@example.org", false, failure.ReasonAliasComplained},
		{feedback.ComplaintWindow, "shop@relay.example.com", "alice@example.org", false, failure.ReasonAliasComplained},
		{feedback.ComplaintWindow + time.Nanosecond, "shop@relay.example.com", "alice@example.org", false, ""},
		{0, "news@relay.example.com", "dave@example.org", true, failure.ReasonDailyCap},
		{59 * time.Minute, "news@relay.example.com", "dave@example.org", true, failure.ReasonDailyCap},
		{time.Hour, "news@relay.example.com", "dave@example.org", true, ""}, // the next UTC day
	} {
		now = t0.Add(tc.at)
		got, err := h.Check(ctx, tc.alias, []string{tc.dest}, tc.spam)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("at t0+%s: Check(%s, %s) = %q, want %q", tc.at, tc.alias, tc.dest, got, tc.want)
		}
	}
}

// What the Handler writes (feedback, the admin API's unpause and enable)
// changes its view at once; what others write to the Store is seen at the
// next load, not before.
func TestViewLocalWrites(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := feedback.NewHandler(feedback.Options{
		Store: store, Aliases: table, ComplaintsDisable: 2, DailyCap: 2, Refresh: never,
		Now: func() time.Time { return now },
	})
	adb, err := aliasdb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adb.Close() })
	file := func() *aliases.Table { return table }
	admin := feedback.NewAliasAdmin(aliases.NewManager(file, adb, aliases.NewCombined(file, adb, aliases.CombinedOptions{})), h)
	shop, alice := "shop@relay.example.com", "alice@example.org"
	steps := []struct {
		name  string
		do    func() error
		spam  bool
		want  failure.Reason
		dests []string
	}{
		{"nothing", nil, true, "", nil},
		{"bounce", func() error { return h.Record(ctx, bounce("Permanent", shop, alice)) }, true, failure.ReasonDestinationPaused, nil},
		{"unpause", func() error { _, err := h.Unpause(ctx, "Alice@example.org"); return err }, true, "", nil},
		{"complaint", func() error { return h.Record(ctx, complaint("c1", shop)) }, false, failure.ReasonAliasComplained, nil},
		{"second complaint disables", func() error { return h.Record(ctx, complaint("c2", shop)) }, true, failure.ReasonAliasDisabled, nil},
		{"enable", func() error { _, err := admin.SetState(ctx, shop, aliases.StateEnabled); return err }, true, "", nil},
		{"sent twice", func() error { return h.Sent(ctx, []string{alice, alice}) }, true, failure.ReasonDailyCap, nil},
		{"flushed: still two", func() error { return h.Flush(ctx) }, true, failure.ReasonDailyCap, nil},
		{"another writes to the Store: not seen yet", func() error {
			return store.Pause(ctx, feedback.Pause{Address: "bob@example.org", Until: now.Add(time.Hour), Kind: feedback.BounceTransient, Since: now})
		}, true, "", []string{"bob@example.org"}},
		{"refresh: seen", func() error { return h.Refresh(ctx) }, true, failure.ReasonDestinationPaused, []string{"bob@example.org"}},
		{"refreshed: the count is the Store's", nil, true, failure.ReasonDailyCap, nil},
	}
	for _, st := range steps {
		if st.do != nil {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		dests := st.dests
		if dests == nil {
			dests = []string{alice}
		}
		got, err := h.Check(ctx, shop, dests, st.spam)
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("%s: Check = %q, want %q", st.name, got, st.want)
		}
	}
	if n, err := store.Sends(ctx, alice, "2026-03-01"); n != 2 || err != nil {
		t.Errorf("Store's count = %d, %v; want 2", n, err)
	}
}

// loadHook is the SQLite store with a write made through the Handler
// after a load has read the Store but before the view is installed.
type loadHook struct {
	feedback.Store
	after func()
}

func (s *loadHook) Load(ctx context.Context, now, since time.Time, day string) (feedback.State, error) {
	st, err := s.Store.Load(ctx, now, since, day)
	if s.after != nil {
		f := s.after
		s.after = nil
		f()
	}
	return st, err
}

// A write made during a load is not lost when the load installs a view
// read before it.
func TestViewWriteDuringLoad(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hook := &loadHook{Store: store}
	h := feedback.NewHandler(feedback.Options{Store: hook, Aliases: table, Refresh: never, Now: func() time.Time { return now }})
	dests := []string{"alice@example.org"}
	if got, err := h.Check(ctx, "shop@relay.example.com", dests, true); got != "" || err != nil {
		t.Fatalf("Check = %q, %v", got, err)
	}
	hook.after = func() {
		if err := h.Record(ctx, bounce("Permanent", "shop@relay.example.com", "alice@example.org")); err != nil {
			t.Error(err)
		}
	}
	if err := h.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := h.Check(ctx, "shop@relay.example.com", dests, true); got != failure.ReasonDestinationPaused || err != nil {
		t.Errorf("after a bounce recorded during the load: Check = %q, %v; want %q", got, err, failure.ReasonDestinationPaused)
	}
}

// Run flushes the counts when it ends.
func TestRunFlushesAtTheEnd(t *testing.T) {
	table, store := fixture(t)
	h := feedback.NewHandler(feedback.Options{Store: store, Aliases: table, DailyCap: 10, Refresh: never})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	if err := h.Sent(ctx, []string{"a@example.org", "a@example.org", "b@example.org"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	day := time.Now().UTC().Format(time.DateOnly)
	for addr, want := range map[string]int{"a@example.org": 2, "b@example.org": 1} {
		if n, err := store.Sends(context.Background(), addr, day); n != want || err != nil {
			t.Errorf("%s: %d, %v; want %d", addr, n, err, want)
		}
	}
}

// Checks, sends and refreshes at once: every send is counted once in the
// Store, and the view's count after the last refresh is the Store's.
func TestViewConcurrentSends(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const workers, perWorker = 4, 50
	h := feedback.NewHandler(feedback.Options{Store: store, Aliases: table, DailyCap: workers * perWorker, Refresh: never,
		Now: func() time.Time { return now }})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				if _, err := h.Check(ctx, "news@relay.example.com", []string{"bob@example.org"}, true); err != nil {
					t.Error(err)
					return
				}
				if err := h.Sent(ctx, []string{"bob@example.org"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := h.Refresh(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if err := h.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := store.Sends(ctx, "bob@example.org", "2026-03-01"); n != workers*perWorker || err != nil {
		t.Errorf("Store's count = %d, %v; want %d", n, err, workers*perWorker)
	}
	if got, _ := h.Check(ctx, "news@relay.example.com", []string{"bob@example.org"}, true); got != failure.ReasonDailyCap {
		t.Errorf("at the cap: Check = %q", got)
	}
}

// failingLoad is a store whose loads fail.
type failingLoad struct{ feedback.Store }

func (failingLoad) Load(context.Context, time.Time, time.Time, string) (feedback.State, error) {
	return feedback.State{}, errors.New("store down")
}

// Run counts the refreshes that fail (mailrelay_feedback_refresh_failures_total).
func TestRunCountsFailedRefreshes(t *testing.T) {
	table, store := fixture(t)
	m := feedback.NewMetrics(prometheus.NewRegistry())
	h := feedback.NewHandler(feedback.Options{Store: failingLoad{store}, Aliases: table, Refresh: 2 * time.Millisecond, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.RefreshFailures) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if n := testutil.ToFloat64(m.RefreshFailures); n < 2 {
		t.Errorf("refresh failures counted: %v, want at least 2", n)
	}
}
