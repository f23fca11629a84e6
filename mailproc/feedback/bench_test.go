package feedback_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// BenchmarkCheck is the per-mail cost of the feedback checks on the
// embedded (SQLite) store, at their dearest: a spam verdict that failed
// (the complaint check runs), a daily cap (the count is read), two
// destinations, one of them paused elsewhere in the table. The clock
// stands still, so the view is loaded once: this is the per-mail path; a
// reload (one Store.Load) comes on top every Refresh/2, not per mail.
func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	table, store := fixture(b)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := feedback.NewHandler(feedback.Options{
		Store: store, Aliases: table, DailyCap: 1 << 30, Now: func() time.Time { return now },
	})
	if err := store.Pause(ctx, feedback.Pause{Address: "zed@example.org", Until: now.Add(time.Hour), Kind: feedback.BounceTransient, Since: now}); err != nil {
		b.Fatal(err)
	}
	dests := []string{"bob@example.org", "carol@example.org"}
	b.Run("Check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, err := h.Check(ctx, "news@relay.example.com", dests, false); r != "" || err != nil {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("CheckAndSent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, err := h.Check(ctx, "news@relay.example.com", dests, false); r != "" || err != nil {
				b.Fatal(r, err)
			}
			if err := h.Sent(ctx, dests); err != nil {
				b.Fatal(err)
			}
		}
	})
}
