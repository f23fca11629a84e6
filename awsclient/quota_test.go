package awsclient

import (
	"context"
	"testing"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/mailproc/pace"
)

// TestSendQuota asks the fake SES for its quota through both APIs, and
// checks that sends beyond the rate are answered Throttling (classified
// transient ses_throttled, not retried) and counted in SentLast24Hours.
func TestSendQuota(t *testing.T) {
	for _, mode := range []string{SendModeSES, SendModeSESv2} {
		t.Run(mode, func(t *testing.T) {
			fake, srv, counter := startSES(t)
			o := testOptions("", srv.URL)
			o.SendMode = mode
			c := newClients(t, o)
			ctx := context.Background()

			q, err := c.SES.SendQuota(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := (pace.Quota{Max24HourSend: -1, MaxSendRate: fakes.DefaultMaxSendRate}); q != want {
				t.Errorf("unlimited fake: quota %+v, want %+v", q, want)
			}

			// A rate of 0.001/s with a burst of 3: three recipients go,
			// the fourth is throttled.
			fake.SetQuota(fakes.Quota{MaxSendRate: 0.001, Burst: 3, Max24HourSend: 200})
			if _, err := c.SES.SendRaw(ctx, "", []string{"a@example.org", "b@example.org"}, []byte(mail)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.SES.SendRaw(ctx, "", []string{"c@example.org"}, []byte(mail)); err != nil {
				t.Fatal(err)
			}
			before := counter.Requests()
			_, err = c.SES.SendRaw(ctx, "", []string{"d@example.org"}, []byte(mail))
			wantFailure(t, err, false, "ses_throttled")
			if n := counter.Requests() - before; n != 1 {
				t.Errorf("throttled send: %d attempts, want 1", n)
			}
			if fake.Throttled() != 1 {
				t.Errorf("fake counted %d throttles, want 1", fake.Throttled())
			}
			q, err = c.SES.SendQuota(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := (pace.Quota{Max24HourSend: 200, MaxSendRate: 0.001, SentLast24Hours: 3}); q != want {
				t.Errorf("quota %+v, want %+v", q, want)
			}

			// Over the daily quota.
			fake.SetQuota(fakes.Quota{MaxSendRate: 100, Max24HourSend: 3})
			_, err = c.SES.SendRaw(ctx, "", []string{"e@example.org"}, []byte(mail))
			wantFailure(t, err, false, "ses_throttled")
		})
	}
}
