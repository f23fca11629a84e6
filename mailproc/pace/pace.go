// Package pace keeps the relay's sends to SES within the account's sending
// quota. A Pacer is a token bucket (golang.org/x/time/rate) running at this
// replica's share of the account's MaxSendRate:
//
//	min(MaxSendRate, configured ceiling) / live replicas
//
// The quota is asked from SES (GetSendQuota or SESv2 GetAccount, through a
// QuotaSource) at start and every Options.Refresh; the number of live
// replicas from Peers (Single when the relay runs alone; a shared database
// implements it for many replicas).
//
// A Throttling answer from SES cuts the rate in half (multiplicative
// decrease, at most once per Options.CutEvery, since the sends in flight
// when SES pushed back all see it); every second without one adds a
// twentieth of the share back (additive increase), never above the share.
//
// The 24-hour quota is watched too: once SentLast24Hours (as SES last told
// it, plus what this replica sent since) reaches Options.NearCap of
// Max24HourSend, Available is false and Wait waits, instead of SES refusing
// the sends; a gauge tells how close the account is.
//
// A worker takes its tokens before it downloads the mail (mailproc), so a
// mail waiting for its turn holds no memory; nothing outside the workers
// (intake, health, admin) ever waits for a token.
package pace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Quota is the account's sending quota as SES reports it. Max24HourSend
// is -1 (or 0) when SES sets no daily limit.
type Quota struct {
	Max24HourSend   float64
	MaxSendRate     float64 // recipients per second
	SentLast24Hours float64
}

// QuotaSource asks SES for the account's quota (implemented by
// awsclient.SES).
type QuotaSource interface {
	SendQuota(ctx context.Context) (Quota, error)
}

// Peers tells how many replicas share the account's quota, this one
// included. The shared state layer implements it for many replicas.
type Peers interface {
	Peers(ctx context.Context) (int, error)
}

// Single is Peers for a relay running alone: always 1.
type Single struct{}

// Peers implements Peers.
func (Single) Peers(context.Context) (int, error) { return 1, nil }

// Defaults of Options.
const (
	DefaultRefresh      = 5 * time.Minute
	DefaultRetryRefresh = 30 * time.Second
	DefaultNearCap      = 0.95
	// DefaultFallbackRate is the rate used while the quota is unknown
	// (SES did not answer yet, or the relay may not ask) and no ceiling is
	// configured: SES's usual starting production quota.
	DefaultFallbackRate = 14.0
	DefaultCutEvery     = time.Second
	// burstWindow is how many seconds of sends the bucket may let out at
	// once: small, so that a full bucket never outruns SES's own.
	burstWindow = 0.1
	// growEvery and growFraction: the additive increase, a twentieth of
	// the share per second (from half the share back to all of it in 10 s).
	growEvery    = time.Second
	growFraction = 0.05
	// minRate is the floor of the multiplicative decrease.
	minRate = 0.1
	// nearCapPoll is how often Wait looks again while the daily quota is
	// nearly used.
	nearCapPoll = time.Second
)

// ErrNearDailyQuota is returned by Wait when ctx ends while the account is
// near its 24-hour quota.
var ErrNearDailyQuota = errors.New("pace: the SES 24-hour sending quota is nearly used")

// Options configure New.
type Options struct {
	Quota QuotaSource // nil: the rate is Ceiling (or DefaultFallbackRate)
	Peers Peers       // nil: Single
	// Ceiling, when positive, caps the account's MaxSendRate (the whole
	// account's, before dividing among replicas).
	Ceiling float64
	// Refresh is how often the quota and the peers are asked again
	// (default DefaultRefresh); after a failure, DefaultRetryRefresh.
	Refresh time.Duration
	// NearCap is the fraction of Max24HourSend from which sends wait
	// (default DefaultNearCap).
	NearCap float64
	// CutEvery is the shortest time between two rate cuts (default
	// DefaultCutEvery).
	CutEvery time.Duration

	Metrics *Metrics // nil: not exported
	Logger  *slog.Logger
	// Now and Sleep are the clock (default time.Now and a timer); tests
	// pass a fake one.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Pacer paces sends. Its methods are safe for concurrent use.
type Pacer struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	lim       *rate.Limiter
	share     float64 // this replica's share of the quota
	peers     int     // live replicas at the last look (0: not asked yet)
	current   float64 // the rate in force (share after cuts)
	lastCut   time.Time
	lastGrow  time.Time
	quota     Quota
	known     bool
	sentSince float64 // recipients sent since the quota was last asked
	failed    bool    // the last Refresh failed
}

// New returns a Pacer at the ceiling (or DefaultFallbackRate) until Refresh
// (or Run) learns the quota.
func New(opts Options) *Pacer {
	if opts.Peers == nil {
		opts.Peers = Single{}
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.NearCap <= 0 || opts.NearCap > 1 {
		opts.NearCap = DefaultNearCap
	}
	if opts.CutEvery <= 0 {
		opts.CutEvery = DefaultCutEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	p := &Pacer{opts: opts, log: opts.Logger}
	r := DefaultFallbackRate
	if opts.Ceiling > 0 {
		r = opts.Ceiling
	}
	now := opts.Now()
	p.share, p.current, p.lastGrow = r, r, now
	p.lim = rate.NewLimiter(rate.Limit(r), burstFor(r))
	p.publish()
	return p
}

func burstFor(r float64) int { return max(1, int(math.Ceil(r*burstWindow))) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run refreshes the quota every Options.Refresh (DefaultRetryRefresh after
// a failure, the last Refresh's included) until ctx ends. Call Refresh
// first for the quota at start.
func (p *Pacer) Run(ctx context.Context) {
	for {
		next := p.opts.Refresh
		p.mu.Lock()
		if p.failed {
			next = min(next, DefaultRetryRefresh)
		}
		p.mu.Unlock()
		if p.opts.Sleep(ctx, next) != nil {
			return
		}
		if err := p.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("asking SES for the sending quota failed; keeping the current rate", "err", err, "rate", p.Limit())
		}
	}
}

// Refresh asks for the quota and the peers once and sets the share.
func (p *Pacer) Refresh(ctx context.Context) (err error) {
	defer func() {
		p.mu.Lock()
		p.failed = err != nil
		p.mu.Unlock()
	}()
	peers, err := p.opts.Peers.Peers(ctx)
	if err != nil {
		return fmt.Errorf("pace: peers: %w", err)
	}
	peers = max(peers, 1)
	if p.opts.Quota == nil {
		p.setShare(Quota{}, false, peers)
		return nil
	}
	q, err := p.opts.Quota.SendQuota(ctx)
	if err != nil {
		return fmt.Errorf("pace: send quota: %w", err)
	}
	p.setShare(q, true, peers)
	return nil
}

// setShare sets the share from the quota (when known) and the peers.
func (p *Pacer) setShare(q Quota, known bool, peers int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := known && !p.known
	if known {
		p.quota, p.known, p.sentSince = q, true, 0
	}
	p.divide(peers, first)
}

// RefreshPeers asks Peers again and divides the quota last learned by
// their number, without asking SES: replicas come and go more often than
// the quota changes (the caller polls it every few seconds). On an error
// the share is kept.
func (p *Pacer) RefreshPeers(ctx context.Context) error {
	peers, err := p.opts.Peers.Peers(ctx)
	if err != nil {
		return fmt.Errorf("pace: peers: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.divide(max(peers, 1), false)
	return nil
}

// divide sets the share: the account's rate (the quota when known, capped
// by the ceiling) divided among peers. The first quota learned (first),
// or a smaller share, applies at once; a larger share is reached by the
// additive increase. p.mu is held.
func (p *Pacer) divide(peers int, first bool) {
	account := DefaultFallbackRate
	switch {
	case p.known && p.quota.MaxSendRate > 0:
		account = p.quota.MaxSendRate
		if p.opts.Ceiling > 0 {
			account = min(account, p.opts.Ceiling)
		}
	case p.opts.Ceiling > 0:
		account = p.opts.Ceiling
	}
	if p.peers != 0 && peers != p.peers {
		p.log.Info("replicas sharing the SES rate changed", "replicas", peers, "was", p.peers)
	}
	p.peers = peers
	share := account / float64(peers)
	p.share = share
	if first || p.current > share {
		p.current = share
		p.lastGrow = p.opts.Now()
	}
	p.apply()
}

// apply sets the limiter to current; p.mu is held.
func (p *Pacer) apply() {
	now := p.opts.Now()
	p.lim.SetLimitAt(now, rate.Limit(p.current))
	p.lim.SetBurstAt(now, burstFor(p.current))
	p.publish()
}

// publish exports the gauges; p.mu is held (or p is not shared yet).
func (p *Pacer) publish() {
	m := p.opts.Metrics
	if m == nil {
		return
	}
	m.RateLimit.Set(p.current)
	if p.known {
		m.MaxSendRate.Set(p.quota.MaxSendRate)
		ratio := 0.0
		if p.quota.Max24HourSend > 0 {
			ratio = (p.quota.SentLast24Hours + p.sentSince) / p.quota.Max24HourSend
		}
		m.DailyQuotaUsed.Set(ratio)
	}
}

// grow applies the additive increase due by now; p.mu is held.
func (p *Pacer) grow(now time.Time) {
	if p.current >= p.share {
		p.lastGrow = now
		return
	}
	steps := int(now.Sub(p.lastGrow) / growEvery)
	if steps <= 0 {
		return
	}
	p.lastGrow = p.lastGrow.Add(time.Duration(steps) * growEvery)
	p.current = min(p.share, p.current+float64(steps)*max(p.share*growFraction, minRate))
	p.apply()
}

// Throttled tells the pacer SES answered Throttling: the rate is cut in
// half, at most once per Options.CutEvery.
func (p *Pacer) Throttled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.opts.Metrics; m != nil {
		m.Throttles.Inc()
	}
	now := p.opts.Now()
	if !p.lastCut.IsZero() && now.Sub(p.lastCut) < p.opts.CutEvery {
		return
	}
	p.lastCut, p.lastGrow = now, now
	p.current = max(minRate, p.current/2)
	p.apply()
	p.log.Info("SES throttled a send; slowing down", "rate", p.current, "share", p.share)
}

// Limit is the rate in force (recipients per second).
func (p *Pacer) Limit() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.grow(p.opts.Now())
	return p.current
}

// Available reports whether sends may go now: false while the account is
// near its 24-hour quota.
func (p *Pacer) Available() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.nearCap()
}

// nearCap: p.mu is held.
func (p *Pacer) nearCap() bool {
	q := p.quota
	return p.known && q.Max24HourSend > 0 && q.SentLast24Hours+p.sentSince >= p.opts.NearCap*q.Max24HourSend
}

// Wait takes n tokens (one per recipient, as SES counts), waiting for
// them, and while the account is near its 24-hour quota, for that to
// pass. It returns ctx's error (or ErrNearDailyQuota) when ctx ends first;
// the tokens are then not taken.
func (p *Pacer) Wait(ctx context.Context, n int) error {
	start := p.opts.Now()
	defer func() {
		if m := p.opts.Metrics; m != nil {
			m.TokenWait.Observe(p.opts.Now().Sub(start).Seconds())
		}
	}()
	for n > 0 {
		p.mu.Lock()
		if p.nearCap() {
			p.mu.Unlock()
			if err := p.opts.Sleep(ctx, nearCapPoll); err != nil {
				return fmt.Errorf("%w: %w", ErrNearDailyQuota, err)
			}
			continue
		}
		now := p.opts.Now()
		p.grow(now)
		k := min(n, p.lim.Burst())
		r := p.lim.ReserveN(now, k)
		p.sentSince += float64(k)
		p.publish()
		p.mu.Unlock()
		if !r.OK() {
			return errors.New("pace: reservation refused") // k <= burst: cannot happen
		}
		if d := r.DelayFrom(now); d > 0 {
			if err := p.opts.Sleep(ctx, d); err != nil {
				r.CancelAt(p.opts.Now())
				p.mu.Lock()
				p.sentSince -= float64(k)
				p.mu.Unlock()
				return err
			}
		}
		n -= k
	}
	return nil
}
