package feedback

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/telemetry"
)

// StateMetrics are the gauges of what feedback holds back: paused
// destinations and aliases by state (disabled ones included, whether by
// an operator or after complaints).
type StateMetrics struct {
	Paused  prometheus.Gauge     // mailrelay_paused_destinations
	Aliases *prometheus.GaugeVec // mailrelay_aliases{state}
}

// NewStateMetrics creates the gauges on reg.
func NewStateMetrics(reg prometheus.Registerer) *StateMetrics {
	m := &StateMetrics{
		Paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_paused_destinations",
			Help: "Destinations whose forwarding is paused after an SES bounce (refreshed every 30 s).",
		}),
		Aliases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailrelay_aliases",
			Help: "Aliases (the alias file's and the managed ones) by state: enabled, disabled (by an operator or after complaints), block_promotional (refreshed every 30 s).",
		}, []string{"state"}),
	}
	telemetry.Register(reg, &m.Paused)
	telemetry.Register(reg, &m.Aliases)
	for _, s := range []aliases.State{aliases.StateEnabled, aliases.StateDisabled, aliases.StateBlockPromotional} {
		m.Aliases.WithLabelValues(string(s))
	}
	return m
}

// AliasLister lists every alias with its state as the admin API shows it
// (AliasAdmin: a disable after complaints included).
type AliasLister interface {
	List(ctx context.Context) ([]aliases.Alias, error)
}

// ObserveEvery is how often Observe refreshes the gauges.
const ObserveEvery = 30 * time.Second

// Observe sets m from h's pauses and the aliases of list now and then
// every ObserveEvery until ctx ends. A failed refresh keeps the last
// figures (the store is down or the disk full; other metrics say so).
func (h *Handler) Observe(ctx context.Context, m *StateMetrics, list AliasLister) {
	t := time.NewTicker(ObserveEvery)
	defer t.Stop()
	for {
		h.observe(ctx, m, list)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Handler) observe(ctx context.Context, m *StateMetrics, list AliasLister) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ps, err := h.PausedDestinations(cctx); err == nil {
		m.Paused.Set(float64(len(ps)))
	}
	all, err := list.List(cctx)
	if err != nil {
		return
	}
	n := map[aliases.State]int{aliases.StateEnabled: 0, aliases.StateDisabled: 0, aliases.StateBlockPromotional: 0}
	for _, a := range all {
		s := a.State
		if s == "" {
			s = aliases.StateEnabled
		}
		n[s]++
	}
	for s, c := range n {
		m.Aliases.WithLabelValues(string(s)).Set(float64(c))
	}
}
