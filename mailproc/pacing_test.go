package mailproc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/pace"
)

// recordingPacer records the tokens asked for and, for each Wait, how many
// S3 downloads had happened by then.
type recordingPacer struct {
	mu        sync.Mutex
	objects   *fakeObjects
	waits     []int
	getsAt    []int
	throttled int
	err       error
}

func (p *recordingPacer) Wait(ctx context.Context, n int) error {
	gets, _ := p.objects.counts()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waits = append(p.waits, n)
	p.getsAt = append(p.getsAt, gets)
	return p.err
}

func (p *recordingPacer) Throttled() {
	p.mu.Lock()
	p.throttled++
	p.mu.Unlock()
}

func TestPacing(t *testing.T) {
	throttled := failure.Transient(failure.ReasonSESThrottled, errors.New("Throttling: Maximum sending rate exceeded."))
	for _, tc := range []struct {
		name          string
		sendErrs      map[int]error
		waitErr       error
		wantWaits     int // Wait calls
		wantThrottled int
		wantSent      int
		wantRetry     string // reason prefix of the retry, "" for completed
	}{
		{"paced", nil, nil, 1, 0, 2, ""},
		{"throttled once: sent again after a token", map[int]error{0: throttled}, nil, 2, 1, 2, ""},
		{"throttled three times: back to the spool", map[int]error{0: throttled, 1: throttled, 2: throttled}, nil, 3, 3, 0, "ses_throttled"},
		{"other errors are not the pacer's", map[int]error{0: failure.Transient(failure.ReasonSES5xx, errors.New("500"))}, nil, 1, 0, 0, "ses_5xx"},
		{"near the daily quota: waits in the spool", nil, fmt.Errorf("%w: %w", pace.ErrNearDailyQuota, context.DeadlineExceeded), 1, 0, 0, "ses_daily_quota"},
		{"attempt ends while waiting", nil, context.DeadlineExceeded, 1, 0, 0, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rp *recordingPacer
			e := newEnv(t, func(c *Config) {
				rp = &recordingPacer{objects: c.Objects.(*fakeObjects), err: tc.waitErr}
				c.Pacer = rp
			})
			e.sender.errs = tc.sendErrs
			e.run(context.Background(), newEntry("sns-1", s3Notification(t, nil, "shop@relay.example.com", "sales@relay.example.com")))

			if len(rp.waits) != tc.wantWaits {
				t.Fatalf("Wait called %d times (%v), want %d", len(rp.waits), rp.waits, tc.wantWaits)
			}
			if rp.getsAt[0] != 0 {
				t.Errorf("the first tokens were taken after %d S3 downloads, want before any", rp.getsAt[0])
			}
			recipients := 0
			for _, c := range e.sender.calls {
				if c.err == nil {
					recipients += len(c.to)
				}
			}
			if tc.wantRetry == "" && rp.waits[0] != recipients {
				t.Errorf("took %d tokens, sent to %d recipients", rp.waits[0], recipients)
			}
			if rp.throttled != tc.wantThrottled {
				t.Errorf("Throttled %d times, want %d", rp.throttled, tc.wantThrottled)
			}
			if n := len(e.sender.sent()); n != tc.wantSent {
				t.Errorf("%d copies sent, want %d", n, tc.wantSent)
			}
			switch {
			case tc.wantRetry == "" && len(e.q.completed) != 1:
				t.Errorf("not completed: retries %v, dead %v", e.q.retries, e.q.dead)
			case tc.wantRetry != "" && (len(e.q.retries) != 1 || !strings.HasPrefix(e.q.retries[0].reason, tc.wantRetry+": ")):
				t.Errorf("retries %v, want one with reason %s", e.q.retries, tc.wantRetry)
			}
			if tc.waitErr != nil {
				if gets, _ := e.objects.counts(); gets != 0 {
					t.Errorf("%d S3 downloads without tokens", gets)
				}
			}
		})
	}
}
