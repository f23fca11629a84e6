package mailproc

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// gatedSender is a fakeSender behind a breaker that can be opened.
type gatedSender struct {
	*fakeSender
	open atomic.Bool
}

func (s *gatedSender) Available() bool { return !s.open.Load() }

// While SES's breaker is open a mail is neither downloaded nor sent; it
// waits a fixed, jittered BreakerDelay (not an exponential backoff), and
// goes out on the first attempt after the breaker closes.
func TestBreakerOpenPostponesWithoutDownloading(t *testing.T) {
	gs := &gatedSender{fakeSender: &fakeSender{}}
	gs.open.Store(true)
	e := newEnv(t, func(c *Config) { c.Sender = gs; c.BreakerDelay = 8 * time.Second })
	ctx := context.Background()

	e.run(ctx, newEntry("sns-b", s3Notification(t, nil)))
	for attempt := 1; attempt < 6; attempt++ {
		e.p.handle(ctx, e.q.entry(t, "sns-b"))
	}
	if gets, _ := e.objects.counts(); gets != 0 {
		t.Fatalf("downloaded %d times while SES's breaker was open", gets)
	}
	if len(e.q.retries) != 6 {
		t.Fatalf("%d retries, want 6", len(e.q.retries))
	}
	for i, r := range e.q.retries {
		lo, hi := testNow.Add(4*time.Second), testNow.Add(8*time.Second)
		if r.at.Before(lo) || r.at.After(hi) || !strings.HasPrefix(r.reason, string(failure.ReasonBreakerOpen)) {
			t.Errorf("retry %d at %v (%q), want in [%v, %v] with reason %s", i, r.at, r.reason, lo, hi, failure.ReasonBreakerOpen)
		}
	}
	gs.open.Store(false)
	e.p.handle(ctx, e.q.entry(t, "sns-b"))
	if len(e.q.completed) != 1 || len(gs.sent()) != 1 {
		t.Fatalf("after the breaker closed: %d completed, %d sent", len(e.q.completed), len(gs.sent()))
	}
	if gets, _ := e.objects.counts(); gets != 1 {
		t.Errorf("%d downloads, want 1", gets)
	}
}

// While a breaker is open the pool takes nothing from the queue: no
// attempts are used and nothing is written; it resumes when it closes.
func TestPoolPausesWhileBreakerOpen(t *testing.T) {
	gs := &gatedSender{fakeSender: &fakeSender{}}
	gs.open.Store(true)
	e := newEnv(t, func(c *Config) { c.Sender = gs; c.Workers = 2 })
	e.q.next = make(chan spool.Entry, 4)
	e.q.next <- newEntry("sns-p", s3Notification(t, nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.p.Start(ctx)
	time.Sleep(3 * pausePoll)
	if len(e.q.next) != 1 {
		t.Fatal("a worker took an entry while SES's breaker was open")
	}
	gs.open.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for len(gs.sent()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := e.p.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if len(gs.sent()) != 1 || len(e.q.retries) != 0 {
		t.Fatalf("after the breaker closed: %d sent, %d retries; want 1, 0", len(gs.sent()), len(e.q.retries))
	}
}
