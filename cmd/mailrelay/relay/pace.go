package relay

import (
	"context"
	"time"

	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/pace"
)

// quotaAtStart bounds the first question for the SES quota: the relay
// starts at the configured ceiling (or pace.DefaultFallbackRate) if SES does
// not answer in time, and keeps asking.
const quotaAtStart = 2 * time.Second

// pacer returns the sending pace (nil when --ses-pace=false), having asked
// SES for the quota once, and keeps it refreshed until Serve returns.
// Replicas: pace.Single until the shared state layer counts live replicas.
func (r *run) pacer(ctx context.Context, quota pace.QuotaSource) mailproc.Pacer {
	cfg := r.cfg.Pace
	if !cfg.Enabled {
		return nil
	}
	p := pace.New(pace.Options{
		Quota:   quota,
		Peers:   pace.Single{},
		Ceiling: cfg.MaxSendRate,
		Refresh: cfg.QuotaRefresh,
		NearCap: cfg.NearDailyCap,
		Metrics: pace.NewMetrics(r.m.Registry),
		Logger:  r.log.With("component", "pace"),
	})
	sctx, cancel := context.WithTimeout(ctx, quotaAtStart)
	err := p.Refresh(sctx)
	cancel()
	if err != nil {
		r.log.Warn("asking SES for the sending quota failed; pacing at the fallback rate until it answers", "err", err, "rate", p.Limit())
	} else {
		r.log.Info("SES sending quota", "rate", p.Limit())
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(runCtx)
	}()
	r.onStop(func() { stop(); <-done })
	return p
}
