package pace

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a clock whose Sleep advances it at once.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.now = c.now.Add(d)
	return nil
}

type quotaFunc func(context.Context) (Quota, error)

func (f quotaFunc) SendQuota(ctx context.Context) (Quota, error) { return f(ctx) }

type peersN int

func (n peersN) Peers(context.Context) (int, error) { return int(n), nil }

func newTest(t *testing.T, q Quota, qerr error, ceiling float64, peers int) (*Pacer, *fakeClock, *Metrics) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	m := NewMetrics(prometheus.NewRegistry())
	p := New(Options{
		Quota:   quotaFunc(func(context.Context) (Quota, error) { return q, qerr }),
		Peers:   peersN(peers),
		Ceiling: ceiling,
		Metrics: m,
		Now:     clk.Now,
		Sleep:   clk.Sleep,
	})
	return p, clk, m
}

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		name    string
		q       Quota
		qerr    error
		ceiling float64
		peers   int
		want    float64
	}{
		{"quota", Quota{MaxSendRate: 50}, nil, 0, 1, 50},
		{"ceiling lowers", Quota{MaxSendRate: 50}, nil, 20, 1, 20},
		{"ceiling never raises", Quota{MaxSendRate: 50}, nil, 80, 1, 50},
		{"shared by two", Quota{MaxSendRate: 50}, nil, 0, 2, 25},
		{"ceiling then shared", Quota{MaxSendRate: 50}, nil, 30, 3, 10},
		{"zero peers count as one", Quota{MaxSendRate: 50}, nil, 0, 0, 50},
		{"unknown quota: fallback", Quota{}, errors.New("AccessDenied"), 0, 1, DefaultFallbackRate},
		{"unknown quota: ceiling", Quota{}, errors.New("AccessDenied"), 7, 1, 7},
		{"quota without a rate: fallback", Quota{MaxSendRate: 0}, nil, 0, 1, DefaultFallbackRate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, m := newTest(t, tc.q, tc.qerr, tc.ceiling, tc.peers)
			err := p.Refresh(context.Background())
			if (err != nil) != (tc.qerr != nil) {
				t.Fatalf("Refresh: %v", err)
			}
			if got := p.Limit(); got != tc.want {
				t.Errorf("Limit = %v, want %v", got, tc.want)
			}
			if got := testutil.ToFloat64(m.RateLimit); got != tc.want {
				t.Errorf("rate gauge = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAIMD(t *testing.T) {
	p, clk, m := newTest(t, Quota{MaxSendRate: 40}, nil, 0, 1)
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		do   string
		want float64
	}{
		{"throttle", 20},
		{"throttle", 20}, // within CutEvery: the same push-back
		{"+1s", 22},      // a twentieth of 40 per second
		{"throttle", 11},
		{"+0.5s", 11},
		{"+0.5s", 13},
		{"+10s", 33},
		{"+10s", 40}, // never above the share
		{"+10s", 40},
	}
	for i, s := range steps {
		switch s.do {
		case "throttle":
			p.Throttled()
		default:
			d, err := time.ParseDuration(s.do[1:])
			if err != nil {
				t.Fatal(err)
			}
			clk.now = clk.now.Add(d)
		}
		if got := p.Limit(); math.Abs(got-s.want) > 1e-9 {
			t.Fatalf("step %d (%s): Limit = %v, want %v", i, s.do, got, s.want)
		}
	}
	if got := testutil.ToFloat64(m.Throttles); got != 3 {
		t.Errorf("throttles = %v, want 3", got)
	}
}

func TestQuotaChangeKeepsCutAndNeverExceedsShare(t *testing.T) {
	rate := 40.0
	clk := &fakeClock{now: time.Unix(0, 0)}
	p := New(Options{
		Quota: quotaFunc(func(context.Context) (Quota, error) { return Quota{MaxSendRate: rate}, nil }),
		Now:   clk.Now, Sleep: clk.Sleep,
	})
	ctx := context.Background()
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	p.Throttled() // 20
	rate = 100
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Limit(); got != 20 {
		t.Errorf("after a larger quota: %v, want 20 (reached additively)", got)
	}
	rate = 10
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Limit(); got != 10 {
		t.Errorf("after a smaller quota: %v, want 10 at once", got)
	}
}

func TestWaitPaces(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  float64
		sends int
		n     int // tokens per send
	}{
		{"10/s", 10, 21, 1},
		{"50/s", 50, 105, 1},
		{"copies to 5 recipients", 50, 21, 5},
		{"more recipients than the burst", 10, 3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, clk, _ := newTest(t, Quota{MaxSendRate: tc.rate}, nil, 0, 1)
			if err := p.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			start := clk.now
			for range tc.sends {
				if err := p.Wait(context.Background(), tc.n); err != nil {
					t.Fatal(err)
				}
			}
			// At most one burst (rate/10) goes at once, the rest one
			// token per 1/rate.
			got := clk.now.Sub(start).Seconds()
			total := float64(tc.sends * tc.n)
			lo, hi := (total-float64(burstFor(tc.rate)))/tc.rate-1e-3, total/tc.rate+1e-3
			if got < lo || got > hi {
				t.Errorf("%d sends of %d took %.3fs, want %.3f..%.3fs", tc.sends, tc.n, got, lo, hi)
			}
		})
	}
}

func TestNearDailyQuota(t *testing.T) {
	p, _, m := newTest(t, Quota{MaxSendRate: 1000, Max24HourSend: 100, SentLast24Hours: 90}, nil, 0, 1)
	ctx := context.Background()
	if err := p.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !p.Available() {
		t.Fatal("90 of 100: not available")
	}
	if err := p.Wait(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if p.Available() {
		t.Error("95 of 100 sent: still available")
	}
	if got := testutil.ToFloat64(m.DailyQuotaUsed); got != 0.95 {
		t.Errorf("daily quota gauge = %v, want 0.95", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Wait(cctx, 1); !errors.Is(err, ErrNearDailyQuota) {
		t.Errorf("Wait near the cap = %v, want ErrNearDailyQuota", err)
	}

	// Unlimited (-1) never waits.
	p2, _, _ := newTest(t, Quota{MaxSendRate: 1000, Max24HourSend: -1, SentLast24Hours: 1e9}, nil, 0, 1)
	if err := p2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !p2.Available() {
		t.Error("unlimited daily quota: not available")
	}
}

func TestRunRetriesFasterAndStops(t *testing.T) {
	calls := 0
	clk := &fakeClock{now: time.Unix(0, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	var slept []time.Duration
	p := New(Options{
		Quota: quotaFunc(func(context.Context) (Quota, error) {
			calls++
			switch calls {
			case 1:
				return Quota{}, errors.New("throttled")
			case 3:
				cancel()
			}
			return Quota{MaxSendRate: float64(10 * calls)}, nil
		}),
		Now: clk.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			slept = append(slept, d)
			return clk.Sleep(ctx, d)
		},
	})
	if err := p.Refresh(ctx); err == nil {
		t.Fatal("first Refresh: no error")
	}
	p.Run(ctx) // returns once canceled
	// After the failure: the retry delay; then the refresh period; the
	// third sleep is refused (ctx ended).
	if calls != 3 || len(slept) != 3 || slept[0] != DefaultRetryRefresh || slept[1] != DefaultRefresh {
		t.Errorf("calls %d, sleeps %v", calls, slept)
	}
	// 20 applied at once (the first quota learned), 30 reached by the
	// additive increase over the 5 minutes the fake clock moved.
	if got := p.Limit(); got != 30 {
		t.Errorf("Limit = %v, want 30", got)
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewMetrics(reg)
	b := NewMetrics(reg)
	b.Throttles.Inc()
	if got := testutil.ToFloat64(a.Throttles); got != 1 {
		t.Errorf("second registration did not reuse the first's counter: %v", got)
	}
}

// peersVar is a Peers whose answer the test changes.
type peersVar struct {
	n   int
	err error
}

func (p *peersVar) Peers(context.Context) (int, error) { return p.n, p.err }

// Replicas join and leave between quota refreshes: a smaller share applies
// at once, a larger one is grown to; the daily count is not reset.
func TestRefreshPeers(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	peers := &peersVar{n: 1}
	p := New(Options{
		Quota: quotaFunc(func(context.Context) (Quota, error) {
			return Quota{MaxSendRate: 40, Max24HourSend: 1000, SentLast24Hours: 900}, nil
		}),
		Peers: peers, NearCap: 0.95, Now: clk.Now, Sleep: clk.Sleep,
	})
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(context.Background(), 4); err != nil { // 904 of 1000 used
		t.Fatal(err)
	}
	for i, s := range []struct {
		peers   int
		err     error
		advance time.Duration
		want    float64
	}{
		{2, nil, 0, 20},
		{4, nil, 0, 10},
		{0, errors.New("db down"), 0, 10},
		{2, nil, 0, 10},
		{2, nil, 5 * time.Second, 15}, // a twentieth of the share (1/s) per second
		{2, nil, 10 * time.Second, 20},
		{1, nil, 0, 20},
		{1, nil, 10 * time.Second, 40}, // 2/s
	} {
		peers.n, peers.err = s.peers, s.err
		err := p.RefreshPeers(context.Background())
		if (err != nil) != (s.err != nil) {
			t.Fatalf("step %d: RefreshPeers: %v", i, err)
		}
		clk.now = clk.now.Add(s.advance)
		if got := p.Limit(); math.Abs(got-s.want) > 1e-9 {
			t.Fatalf("step %d (%d peers, +%v): Limit = %v, want %v", i, s.peers, s.advance, got, s.want)
		}
	}
	p.mu.Lock()
	sent := p.sentSince
	p.mu.Unlock()
	if sent != 4 {
		t.Fatalf("sends since the quota was asked = %v, want 4 (RefreshPeers must not reset it)", sent)
	}
}
