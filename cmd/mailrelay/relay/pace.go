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
// Replicas: alone without a database (pace.Single); with one, the live
// replicas counted in it (pgqueue's Peers), asked again every third of
// the lease, so that a replica joining or leaving changes every replica's
// share within a few seconds.
func (r *run) pacer(ctx context.Context, quota pace.QuotaSource) mailproc.Pacer {
	cfg := r.cfg.Pace
	if !cfg.Enabled {
		return nil
	}
	var peers pace.Peers = pace.Single{}
	shared, isShared := r.queue.Load().(pace.Peers)
	if isShared {
		peers = shared
	}
	p := pace.New(pace.Options{
		Quota:   quota,
		Peers:   peers,
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
	if isShared {
		every := max(r.cfg.DatabaseLease/3, time.Second)
		peersDone := make(chan struct{})
		go func() {
			defer close(peersDone)
			r.refreshPeers(runCtx, p, every)
		}()
		r.onStop(func() { stop(); <-peersDone })
	}
	return p
}

// refreshPeers asks for the live replicas every interval until ctx ends
// (a failure keeps the share; the database's own breaker and timeout bound
// each look).
func (r *run) refreshPeers(ctx context.Context, p *pace.Pacer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.RefreshPeers(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && !failing:
			r.log.Warn("counting live replicas failed; keeping the current share of the SES rate", "err", err)
		}
		failing = err != nil
	}
}
