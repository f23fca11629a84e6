package feedback_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
)

const aliasYAML = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
  - address: news@relay.example.com
    forward_to: [bob@example.org, carol@example.org]
`

func bounce(kind, alias string, rcpts ...string) []byte {
	list := ""
	for i, r := range rcpts {
		if i > 0 {
			list += ","
		}
		list += fmt.Sprintf(`{"emailAddress":%q,"status":"5.1.1","action":"failed"}`, r)
	}
	return []byte(fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":%q,"bounceSubType":"General","bouncedRecipients":[%s],"timestamp":"2026-03-01T12:00:00Z","feedbackId":"fb"},
"mail":{"messageId":"m1","source":%q,"destination":[],"commonHeaders":{"from":["\"Dora via relay\" <%s>"]}}}`, kind, list, alias, alias))
}

func complaint(id, from string) []byte {
	return []byte(fmt.Sprintf(`{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"alice@example.org"}],"timestamp":"2026-03-01T12:00:00Z","feedbackId":%q},
"mail":{"messageId":"m-%s","source":"%s","destination":["alice@example.org"],"commonHeaders":{"from":[%q]}}}`, id, id, from, "Dora via relay <"+from+">"))
}

// fixture is the alias table of aliasYAML and an empty SQLite feedback
// store, closed when the test ends.
func fixture(t testing.TB) (*aliases.Table, *sqlitestore.Store) {
	t.Helper()
	table, err := aliases.Parse([]byte(aliasYAML))
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return table, store
}

func TestHandler(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := feedback.NewMetrics(prometheus.NewRegistry())
	h := feedback.NewHandler(feedback.Options{
		Store: store, Aliases: table, PauseHard: 720 * time.Hour, PauseSoft: time.Hour,
		ComplaintsDisable: 3, DailyCap: 2, Metrics: m, Now: func() time.Time { return now },
	})

	type check struct {
		alias string
		dests []string
		spam  bool
		want  failure.Reason
	}
	steps := []struct {
		name    string
		payload []byte
		advance time.Duration
		sent    []string
		checks  []check
	}{
		{"nothing yet", nil, 0, nil, []check{{"shop@relay.example.com", []string{"alice@example.org"}, true, ""}}},
		{"bounce for an unknown address changes nothing", bounce("Permanent", "shop@relay.example.com", "stranger@example.org"), 0, nil,
			[]check{{"shop@relay.example.com", []string{"alice@example.org"}, true, ""}}},
		{"bounce from an unknown alias changes nothing", bounce("Permanent", "who@relay.example.com", "alice@example.org"), 0, nil,
			[]check{{"shop@relay.example.com", []string{"alice@example.org"}, true, ""}}},
		{"soft bounce pauses one of several", bounce("Transient", "news@relay.example.com", "Carol@example.org"), 0, nil, []check{
			{"news@relay.example.com", []string{"bob@example.org", "carol@example.org"}, true, failure.ReasonDestinationPaused},
			{"news@relay.example.com", []string{"bob@example.org"}, true, ""},
		}},
		{"soft pause expires", nil, 61 * time.Minute, nil, []check{{"news@relay.example.com", []string{"carol@example.org"}, true, ""}}},
		{"hard bounce with several recipients", bounce("Permanent", "news@relay.example.com", "bob@example.org", "carol@example.org"), 0, nil, []check{
			{"news@relay.example.com", []string{"bob@example.org"}, true, failure.ReasonDestinationPaused},
			{"news@relay.example.com", []string{"carol@example.org"}, true, failure.ReasonDestinationPaused},
		}},
		{"hard pause lasts", nil, 700 * time.Hour, nil, []check{{"news@relay.example.com", []string{"bob@example.org"}, true, failure.ReasonDestinationPaused}}},
		{"complaint 1: unverified spam dropped", complaint("c1", "shop@relay.example.com"), 0, nil, []check{
			{"shop@relay.example.com", []string{"alice@example.org"}, false, failure.ReasonAliasComplained},
			{"shop@relay.example.com", []string{"alice@example.org"}, true, ""},
		}},
		{"complaint 1 again counts once", complaint("c1", "shop@relay.example.com"), 0, nil, nil},
		{"complaint 2", complaint("c2", "shop@relay.example.com"), 0, nil, []check{{"shop@relay.example.com", []string{"alice@example.org"}, true, ""}}},
		{"complaint about an unknown from", complaint("c9", "nobody@elsewhere.example"), 0, nil, nil},
		{"complaint 3 disables", complaint("c3", "shop@relay.example.com"), 0, nil, []check{{"shop@relay.example.com", []string{"alice@example.org"}, true, failure.ReasonAliasDisabled}}},
		{"daily cap", nil, 0, []string{"dave@example.org", "dave@example.org"}, []check{
			{"news@relay.example.com", []string{"dave@example.org"}, true, failure.ReasonDailyCap},
		}},
		{"next day", nil, 24 * time.Hour, nil, []check{{"news@relay.example.com", []string{"dave@example.org"}, true, ""}}},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.payload != nil {
			if err := h.Record(ctx, st.payload); err != nil {
				t.Fatalf("%s: Record: %v", st.name, err)
			}
		}
		for _, d := range st.sent {
			if err := h.Sent(ctx, []string{d}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range st.checks {
			got, err := h.Check(ctx, c.alias, c.dests, c.spam)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("%s: Check(%s, %v, spam pass %v) = %q, want %q", st.name, c.alias, c.dests, c.spam, got, c.want)
			}
		}
	}
	for _, c := range []struct {
		typ, action string
		want        float64
	}{
		{"Bounce", "ignored", 2}, {"Bounce", "paused", 2}, {"Complaint", "complaint", 3}, {"Complaint", "disabled", 1}, {"Complaint", "ignored", 1},
	} {
		if got := testutil.ToFloat64(m.Feedback.WithLabelValues(c.typ, c.action)); got != c.want {
			t.Errorf("feedback_total{%s,%s} = %v, want %v", c.typ, c.action, got, c.want)
		}
	}
	if err := h.Record(ctx, []byte(`{"notificationType":"Bounce"}`)); !failure.IsPermanent(err) {
		t.Errorf("malformed: %v", err)
	}
}
