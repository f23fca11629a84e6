package feedback_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// listed is an AliasLister over a fixed list (the alias store has tests
// of its own).
type listed []aliases.Alias

func (l listed) List(context.Context) ([]aliases.Alias, error) { return l, nil }

// Observe sets the paused-destination gauge from the store and the alias
// gauges from the list, a disable after complaints counted as disabled.
func TestObserve(t *testing.T) {
	ctx := context.Background()
	table, store := fixture(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := feedback.NewHandler(feedback.Options{Store: store, Aliases: table, PauseHard: time.Hour, PauseSoft: time.Hour,
		ComplaintsDisable: 3, Now: func() time.Time { return now }})
	for _, p := range [][]byte{bounce("Permanent", "shop@relay.example.com", "alice@example.org")} {
		if err := h.Record(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	m := feedback.NewStateMetrics(prometheus.NewRegistry())
	list := listed{
		{Address: "a@relay.example.com", State: aliases.StateEnabled},
		{Address: "b@relay.example.com"}, // file aliases carry no state: enabled
		{Address: "c@relay.example.com", State: aliases.StateDisabled},
		{Address: "d@relay.example.com", State: aliases.StateBlockPromotional},
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); h.Observe(cctx, m, list) }()
	// The first refresh runs at once; wait (bounded) for it.
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(m.Aliases.WithLabelValues("block_promotional")) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	for _, tt := range []struct {
		name string
		got  float64
		want float64
	}{
		{"paused", testutil.ToFloat64(m.Paused), 1},
		{"enabled", testutil.ToFloat64(m.Aliases.WithLabelValues("enabled")), 2},
		{"disabled", testutil.ToFloat64(m.Aliases.WithLabelValues("disabled")), 1},
		{"block_promotional", testutil.ToFloat64(m.Aliases.WithLabelValues("block_promotional")), 1},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
