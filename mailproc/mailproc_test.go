package mailproc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

// wait is how long a test waits for something that should happen at once
// before declaring it lost; it bounds the test, it is not asserted.
const wait = 10 * time.Second

func TestNew(t *testing.T) {
	table, err := aliases.Parse([]byte(aliasYAML))
	if err != nil {
		t.Fatal(err)
	}
	full := Config{Queue: newFakeQueue(), Objects: newFakeObjects(), Sender: &fakeSender{}, Aliases: table, Metrics: telemetry.NewMetrics()}
	for _, tc := range []struct {
		name string
		mut  func(c *Config)
	}{
		{"no queue", func(c *Config) { c.Queue = nil }},
		{"no object store", func(c *Config) { c.Objects = nil }},
		{"no sender", func(c *Config) { c.Sender = nil }},
		{"no aliases", func(c *Config) { c.Aliases = nil }},
		{"no metrics", func(c *Config) { c.Metrics = nil }},
	} {
		c := full
		tc.mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}

	p, err := New(full)
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	if c.Workers != 1 || c.AttemptTimeout <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.RetryMaxAge <= 0 ||
		c.Policy.MaxMessageBytes <= 0 || c.InFlightBytes < c.Policy.MaxMessageBytes || c.Logger == nil || c.Now == nil {
		t.Errorf("defaults not applied: %+v", c)
	}

	// RetryMax below RetryMin is raised; InFlightBytes below the message
	// limit is raised to it.
	full.RetryMin, full.RetryMax = time.Minute, time.Second
	full.Policy.MaxMessageBytes, full.InFlightBytes = 1000, 10
	p, err = New(full)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.RetryMax != time.Minute || p.budget.limit != 1000 {
		t.Errorf("RetryMax %v, budget %d; want 1m, 1000", p.cfg.RetryMax, p.budget.limit)
	}
}

// Four workers drain 50 entries handed out by a blocking Next; all four run
// at once; Stop returns once they are idle.
func TestPoolStartStop(t *testing.T) {
	const workers, entries = 4, 50
	e := newEnv(t, func(c *Config) {
		c.Workers = workers
		c.InFlightBytes = 2 * workers * testMaxMB
	})
	e.q.finished = make(chan string, entries)

	// The first sends wait until all workers are sending: proof that the
	// pool runs them concurrently. Count how many are in flight at most.
	var inFlight, maxInFlight atomic.Int32
	var arrived atomic.Int32
	allIn := make(chan struct{})
	e.sender.hook = func(ctx context.Context, call int) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		if call < workers {
			if arrived.Add(1) == workers {
				close(allIn)
			}
			select {
			case <-allIn:
			case <-time.After(wait):
				return errors.New("workers did not send concurrently")
			}
		}
		return nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.p.Start(ctx)

	src := mailtest.ReceivedMail()
	for i := range entries {
		var payload []byte
		if i%2 == 0 {
			key := fmt.Sprintf("incoming/msg-%d", i)
			e.objects.put(testBucket, key, src)
			payload = s3Notification(t, func(n *sesnotify.Notification) {
				n.Mail.MessageID = fmt.Sprintf("msg-%d", i)
				n.Receipt.Action.ObjectKey = key
			})
		} else {
			payload = notification(t, "received_sns_utf8.json", nil)
		}
		select {
		case e.q.next <- newEntry(fmt.Sprintf("sns-%d", i), payload):
		case <-time.After(wait):
			t.Fatalf("no worker took entry %d", i)
		}
	}
	for i := range entries {
		select {
		case <-e.q.finished:
		case <-time.After(wait):
			t.Fatalf("only %d of %d entries finished", i, entries)
		}
	}

	sctx, scancel := context.WithTimeout(context.Background(), wait)
	defer scancel()
	if err := e.p.Stop(sctx); err != nil {
		t.Fatalf("Stop with idle workers: %v", err)
	}
	e.p.Wait()

	completed, retried, dead, released := e.q.outcomes()
	if completed != entries || retried+dead+released != 0 {
		t.Errorf("completed %d, retried %d, dead %d, released %d; want %d completed", completed, retried, dead, released, entries)
	}
	seen := map[string]bool{}
	for _, id := range e.q.completed {
		if seen[id] {
			t.Errorf("%s completed twice", id)
		}
		seen[id] = true
	}
	sent := e.sender.sent()
	if len(sent) != entries {
		t.Errorf("%d copies sent, want %d", len(sent), entries)
	}
	for _, c := range sent {
		checkCopy(t, c, shopCopy, src)
	}
	if m := maxInFlight.Load(); m != workers {
		t.Errorf("at most %d sends in flight, want %d", m, workers)
	}
	if _, deletes := e.objects.counts(); deletes != entries/2 {
		t.Errorf("%d objects deleted, want %d", deletes, entries/2)
	}
	if v := testutil.ToFloat64(e.metrics.Messages.WithLabelValues(telemetry.MsgForwarded, "ok")); v != entries {
		t.Errorf("forwarded/ok = %v, want %d", v, entries)
	}
	if used := budgetUsed(e.p); used != 0 {
		t.Errorf("byte budget holds %d bytes after draining", used)
	}
}

// Stop waits for work in progress to finish before returning.
func TestStopWaitsForWorkInProgress(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Workers = 2 })
	started := make(chan struct{}, 1)
	proceed := make(chan struct{})
	e.sender.hook = func(ctx context.Context, call int) error {
		started <- struct{}{}
		select {
		case <-proceed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.p.Start(ctx)
	e.give(t, newEntry("sns-1", s3Notification(t, nil)))
	await(t, started, "send did not start")

	stopped := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), wait)
		defer scancel()
		stopped <- e.p.Stop(sctx)
	}()
	close(proceed)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(2 * wait):
		t.Fatal("Stop did not return")
	}
	// Stop returned, so the attempt must be settled already.
	completed, retried, dead, released := e.q.outcomes()
	if completed != 1 || retried+dead+released != 0 {
		t.Errorf("after Stop: completed %d, retried %d, dead %d, released %d", completed, retried, dead, released)
	}
}

// When Stop's context ends before the work does, Stop says so; canceling
// the work context then makes the worker leave the entry in the spool.
func TestStopTimeoutThenCancelWork(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Workers = 3 })
	e.sender.block = true
	e.sender.started = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.p.Start(ctx)
	e.give(t, newEntry("sns-1", s3Notification(t, nil)))
	await(t, e.sender.started, "send did not start")

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer scancel()
	if err := e.p.Stop(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a send stuck: %v, want deadline exceeded", err)
	}
	cancel()
	waited := make(chan struct{})
	go func() { e.p.Wait(); close(waited) }()
	await(t, waited, "workers did not return after the work context was canceled")
	completed, retried, dead, released := e.q.outcomes()
	if released != 1 || completed+retried+dead != 0 {
		t.Errorf("completed %d, retried %d, dead %d, released %d; want only a release", completed, retried, dead, released)
	}
}

// Workers return when the spool is closed.
func TestWorkersExitOnClosedQueue(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Workers = 3 })
	e.q.nextErr = fmt.Errorf("next: %w", spool.ErrClosed)
	e.p.Start(context.Background())
	waited := make(chan struct{})
	go func() { e.p.Wait(); close(waited) }()
	await(t, waited, "workers kept running on a closed spool")
}

func TestByteBudget(t *testing.T) {
	m := telemetry.NewMetrics()
	b := newByteBudget(100, m.InFlightBytes)
	ctx := context.Background()
	check := func(want int64) {
		t.Helper()
		b.mu.Lock()
		used := b.used
		b.mu.Unlock()
		if used != want {
			t.Fatalf("budget used %d, want %d", used, want)
		}
		if g := testutil.ToFloat64(m.InFlightBytes); g != float64(want) {
			t.Fatalf("mailrelay_inflight_bytes %v, want %d", g, want)
		}
	}

	if err := b.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	check(60)

	// Beyond the limit: blocks until a release makes room.
	got := make(chan error, 1)
	go func() { got <- b.acquire(ctx, 50) }()
	for range 5 {
		time.Sleep(5 * time.Millisecond)
		select {
		case err := <-got:
			t.Fatalf("acquired beyond the limit (err %v)", err)
		default:
		}
	}
	check(60)
	b.release(60)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("acquire not woken by release")
	}
	check(50)

	// More than the limit is clamped to it, so it waits for all of it.
	cctx, cancel := context.WithCancel(ctx)
	go func() { got <- b.acquire(cctx, 500) }()
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled acquire: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("acquire not woken by cancel")
	}
	check(50)
	b.release(50)
	check(0)
	if err := b.acquire(ctx, 500); err != nil {
		t.Fatal(err)
	}
	check(100)
	b.release(500)
	check(0)

	// Many concurrent holders never exceed the limit together.
	var held, maxHeld atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 20 {
				if err := b.acquire(ctx, 30); err != nil {
					t.Error(err)
					return
				}
				n := held.Add(30)
				for {
					m := maxHeld.Load()
					if n <= m || maxHeld.CompareAndSwap(m, n) {
						break
					}
				}
				held.Add(-30)
				b.release(30)
			}
		})
	}
	wg.Wait()
	if m := maxHeld.Load(); m > 100 {
		t.Errorf("%d bytes held at once, limit 100", m)
	}
	check(0)
}

// FuzzHandle: whatever the payload, an attempt settles the entry exactly
// once, does not panic, and gives the byte budget back.
func FuzzHandle(f *testing.F) {
	for _, name := range []string{"received_s3.json", "received_sns_base64.json", "received_sns_utf8.json", "bounce.json", "complaint.json"} {
		f.Add(mailtest.Notification(name))
	}
	f.Add(s3Notification(f, nil, "nobody@relay.example.com", "shop@relay.example.com", "sales@relay.example.com"))
	inline := sesnotify.Received("x", time.Time{}, []string{"shop@relay.example.com"}, sesnotify.Action{Type: sesnotify.ActionSNS})
	inline.Content = "From: a@b\r\n\r\nhi"
	f.Add(inline.JSON())
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		e := newEnv(t, nil)
		e.run(context.Background(), newEntry("sns-1", payload))
		completed, retried, dead, released := e.q.outcomes()
		if completed+retried+dead+released != 1 {
			t.Fatalf("settled %d times (completed %d, retried %d, dead %d, released %d)", completed+retried+dead+released, completed, retried, dead, released)
		}
		if released != 0 {
			t.Fatalf("released without shutdown")
		}
		if v := testutil.ToFloat64(e.metrics.Panics.WithLabelValues("mailproc")); v != 0 {
			t.Fatalf("panicked")
		}
		if used := budgetUsed(e.p); used != 0 {
			t.Fatalf("byte budget holds %d bytes", used)
		}
		if len(e.sender.sent()) > 0 && completed != 1 {
			t.Fatalf("sent copies but did not complete")
		}
	})
}
