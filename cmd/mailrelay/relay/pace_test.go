package relay_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
)

// TestBacklogDrainsAtTheQuota: SES is down while mail arrives, then back
// with a small quota (50 recipients/s). The backlog drains within 1.25×
// backlog ÷ quota, with Throttling answers under 1% of the sends, nothing
// lost, and readiness green throughout.
func TestBacklogDrainsAtTheQuota(t *testing.T) {
	const (
		quota   = 50.0
		backlog = 200
	)
	var down atomic.Bool
	h := relaytest.Start(t, relaytest.Options{
		SES: fakes.SESOptions{Quota: fakes.Quota{MaxSendRate: quota}},
		// Down: every send answered 500 (the breaker stays closed so
		// that the mail retries at the spool's pace, not the breaker's).
		FrontSES: func(s *fakes.SES) (string, func(), error) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if down.Load() {
					fakes.WriteSESError(w, false, fakes.ErrInternal)
					return
				}
				s.ServeHTTP(w, r)
			}))
			return srv.URL, srv.Close, nil
		},
		Breaker: awsclient.BreakerSettings{Failures: 1 << 30},
		Args:    []string{"--workers", "8"},
	})

	down.Store(true)
	for i := range backlog {
		h.Deliver(fmt.Sprintf("sns-%d", i), fmt.Sprintf("ses-%d", i), testMail(i), "shop@relay.example.com")
	}
	if n := len(h.SES.Sent()); n != 0 {
		t.Fatalf("%d sent while SES was down", n)
	}

	stopProbe := make(chan struct{})
	probeDone := make(chan error, 1)
	go func() { probeDone <- probeReady(h.Relay.HealthAddr, stopProbe) }()

	start := time.Now()
	down.Store(false)
	h.WaitSent(backlog)
	took := time.Since(start)
	close(stopProbe)
	if err := <-probeDone; err != nil {
		t.Error(err)
	}

	limit := time.Duration(1.25 * backlog / quota * float64(time.Second))
	t.Logf("drained %d mails in %v (limit %v), %d throttled", backlog, took, limit, h.SES.Throttled())
	if took > limit {
		t.Errorf("backlog of %d at %v/s drained in %v, want within %v", backlog, quota, took, limit)
	}
	if th := h.SES.Throttled(); float64(th) >= 0.01*backlog {
		t.Errorf("%d of %d sends throttled, want under 1%%", th, backlog)
	}
	relaytest.WaitFor(t, "the spool to empty", func() bool { return h.Relay.Spool.Stats().Messages == 0 })
	if st := h.Relay.Spool.Stats(); st.DeadLetters != 0 {
		t.Errorf("%d dead letters", st.DeadLetters)
	}
	seen := map[string]int{}
	for _, s := range h.SES.Sent() {
		seen[subjectRE.FindString(string(s.Raw))]++
	}
	if len(seen) != backlog || len(h.SES.Sent()) != backlog {
		t.Errorf("%d sends of %d distinct mails, want each of %d once", len(h.SES.Sent()), len(seen), backlog)
	}
	if got := gauge(t, h, "mailrelay_ses_send_rate_limit"); got <= 0 || got > quota {
		t.Errorf("rate limit in force %v, want in (0, %v]", got, quota)
	}
}

var subjectRE = regexp.MustCompile(`Subject: test \d+`)

// probeReady polls /readyz until stop is closed; a non-200 is an error.
func probeReady(addr string, stop <-chan struct{}) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := c.Get("http://" + addr + "/readyz")
		if err != nil {
			return fmt.Errorf("readyz: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz answered %d while the backlog drained", resp.StatusCode)
		}
	}
}

// gauge reads a gauge without labels from the relay's registry.
func gauge(t *testing.T, h *relaytest.Harness, name string) float64 {
	t.Helper()
	fams, err := h.Relay.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
