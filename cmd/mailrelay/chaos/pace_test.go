package chaos

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// TestReplicasShareTheQuota: two replicas on one PostgreSQL share the SES
// account's MaxSendRate (each sends at half of it, knowing the other
// through the database). SES is down while a backlog arrives on both, then
// back: the backlog drains within 1.25× backlog ÷ quota, measured from the
// first send SES accepts (the relays' SES breakers open during the outage
// and let a trial through after their own timeout), with Throttling
// answers under 1% of the sends and every mail sent once.
func TestReplicasShareTheQuota(t *testing.T) {
	const (
		quota   = 50.0
		backlog = 400
	)
	var down atomic.Bool
	c := startClusterWith(t, 2, pgtest.NewDatabase(t), clusterOptions{
		SES: fakes.SESOptions{Quota: fakes.Quota{MaxSendRate: quota}},
		SESFront: func(s *fakes.SES) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if down.Load() {
					fakes.WriteSESError(w, false, fakes.ErrInternal)
					return
				}
				s.ServeHTTP(w, r)
			})
		},
	})
	// Both replicas see each other: each paces at half the quota.
	for _, r := range c.replicas {
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, err := r.gauge("mailrelay_ses_send_rate_limit")
			if err == nil && v == quota/2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rate in force %v (%v), want %v: the replicas do not share the quota", v, err, quota/2)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	down.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range backlog {
		if !c.deliver(ctx, c.replicas[i%2], c.notification(i)) {
			t.Fatalf("notification %d not acknowledged", i)
		}
	}
	if n := len(c.ses.Sent()); n != 0 {
		t.Fatalf("%d sent while SES was down", n)
	}
	down.Store(false)
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer wcancel()
	if err := c.ses.WaitSent(wctx, backlog); err != nil {
		t.Fatalf("%d of %d sent: %v", len(c.ses.Sent()), backlog, err)
	}
	sent := c.ses.Sent()
	took := sent[len(sent)-1].At.Sub(sent[0].At)
	limit := time.Duration(1.25 * backlog / quota * float64(time.Second))
	th := c.ses.Throttled()
	t.Logf("two replicas drained %d mails in %v from the first send (limit %v), %d throttled", backlog, took, limit, th)
	if took > limit {
		t.Errorf("backlog of %d at %v/s shared by two replicas drained in %v, want within %v", backlog, quota, took, limit)
	}
	if float64(th) >= 0.01*backlog {
		t.Errorf("%d of %d sends throttled, want under 1%%", th, backlog)
	}
	time.Sleep(2 * replicaLease) // room for a duplicate to show
	if n, ids := len(c.ses.Sent()), countIDs(c.ses.Sent()); n != backlog || ids != backlog {
		t.Errorf("%d sends of %d distinct mails, want each of %d once", n, ids, backlog)
	}
}
