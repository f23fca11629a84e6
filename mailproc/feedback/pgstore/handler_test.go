package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// Two replicas: two Handlers, each with its own Store (pool) on one
// database. What one records reaches the other's checks at the other's
// next load (Run does one every Refresh/2; a check older than Refresh
// does its own), not before — the view is what the checks read.
func TestTwoHandlers(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	table, err := aliases.Parse([]byte(`domains: [relay.example.com]
aliases:
  - address: news@relay.example.com
    forward_to: [bob@example.org]
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const refresh = 2 * time.Second
	handler := func() *feedback.Handler {
		return feedback.NewHandler(feedback.Options{
			Store: open(t, url), Aliases: table, ComplaintsDisable: 2, DailyCap: 3, Refresh: refresh,
			Now: func() time.Time { return now },
		})
	}
	a, b := handler(), handler()
	const alias, bob = "news@relay.example.com", "bob@example.org"
	bounce := []byte(fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":%q}],"timestamp":"2026-03-01T12:00:00Z","feedbackId":"fb"},
"mail":{"messageId":"m1","source":%q,"destination":[%q],"commonHeaders":{"from":[%q]}}}`, bob, alias, bob, alias))
	complaint := func(id string) []byte {
		return []byte(fmt.Sprintf(`{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":%q}],"timestamp":"2026-03-01T12:00:00Z","feedbackId":%q},
"mail":{"messageId":"m-%s","source":%q,"destination":[%q],"commonHeaders":{"from":[%q]}}}`, bob, id, id, alias, bob, alias))
	}
	steps := []struct {
		name         string
		do           func() error
		spam         bool
		beforeB, onA failure.Reason // b's check before its load; a's after both loaded
		afterB       failure.Reason // b's after it
	}{
		{"nothing", nil, true, "", "", ""},
		{"a records a bounce", func() error { return a.Record(ctx, bounce) }, true,
			"", failure.ReasonDestinationPaused, failure.ReasonDestinationPaused},
		{"a unpauses", func() error { _, err := a.Unpause(ctx, bob); return err }, true,
			failure.ReasonDestinationPaused, "", ""},
		{"b records a complaint", func() error { return b.Record(ctx, complaint("c1")) }, false,
			failure.ReasonAliasComplained, failure.ReasonAliasComplained, failure.ReasonAliasComplained},
		// a loads before b flushes: a sees b's send at its next load.
		{"a sends twice, b once: at the cap", func() error {
			if err := a.Sent(ctx, []string{bob, bob}); err != nil {
				return err
			}
			return b.Sent(ctx, []string{bob})
		}, true, "", "", failure.ReasonDailyCap},
	}
	for _, st := range steps {
		if st.do != nil {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		check := func(h *feedback.Handler) failure.Reason {
			r, err := h.Check(ctx, alias, []string{bob}, st.spam)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			return r
		}
		if got := check(b); got != st.beforeB {
			t.Errorf("%s: b before its load: %q, want %q", st.name, got, st.beforeB)
		}
		// Run's periodic refresh on both (a flushes its counts, b loads).
		for _, h := range []*feedback.Handler{a, b} {
			if err := h.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := check(a); got != st.onA {
			t.Errorf("%s: a: %q, want %q", st.name, got, st.onA)
		}
		if got := check(b); got != st.afterB {
			t.Errorf("%s: b after its load: %q, want %q", st.name, got, st.afterB)
		}
	}
	// Without Refresh, the check itself loads a view Refresh old.
	if err := a.Record(ctx, bounce); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Check(ctx, alias, []string{"bob@example.org"}, true); got != failure.ReasonDailyCap {
		t.Errorf("b, view fresh: %q, want the cap (the pause not seen yet)", got)
	}
	now = now.Add(refresh)
	if got, err := b.Check(ctx, alias, []string{"bob@example.org"}, true); got != failure.ReasonDestinationPaused || err != nil {
		t.Errorf("b, view %s old: %q, %v; want %q", refresh, got, err, failure.ReasonDestinationPaused)
	}
}
