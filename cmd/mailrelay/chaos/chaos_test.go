package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// TestKillNineUnderLoad posts signed notifications at a steady rate while
// the relay binary is SIGKILLed 3–5 times at random moments and restarted
// on the same spool; SNS-like senders retry every delivery not answered
// 200. At the end every acknowledged notification was forwarded exactly
// once, and nothing was dead-lettered. A duplicate is tolerated only when a
// kill explains it, and they are reported: the remaining window spans the
// whole SES call (a request SES received may be accepted although the
// relay died waiting for the answer) plus the fsync of the sent-record
// (mailproc: SendRaw, then spool.MarkSent with pebble.Sync).
func TestKillNineUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the relay binary; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with CHAOS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	dir := t.TempDir()
	st := newStage(t, dir, fakes.SESOptions{Latency: 10 * time.Millisecond})
	bin, signer, prefix, s3, ses, aliasFile, home := st.bin, st.signer, st.certPrefix, st.s3, st.ses, st.aliasFile, st.home
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = relayEnv(home, r, s3.URL(), ses.URL(), prefix, filepath.Join(dir, "spool"), aliasFile,
		"RELAY_LOG_LEVEL=warn")
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	// The load: n notifications at a steady rate over loadFor, each posted
	// by an SNS-like sender that retries until it is answered 200.
	const (
		n       = 400
		loadFor = 8 * time.Second
		senders = 16
	)
	for i := range n {
		if err := s3.Put(bucket, fmt.Sprintf("inbound/ses-%d", i), mailFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		acked    [n]atomic.Bool
		attempts atomic.Int64
		non200   atomic.Int64
		failed   atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	work := make(chan int)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := signer.Notification(topic, fmt.Sprintf("sns-%d", i), "Amazon SES Email Receipt Notification",
					receivedS3(fmt.Sprintf("ses-%d", i), fmt.Sprintf("inbound/ses-%d", i)), "2")
				for delay := 50 * time.Millisecond; ctx.Err() == nil; delay = min(2*delay, time.Second) {
					attempts.Add(1)
					resp, err := client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							acked[i].Store(true)
							break
						}
						non200.Add(1)
					} else {
						failed.Add(1)
					}
					select {
					case <-ctx.Done():
					case <-time.After(delay):
					}
				}
			}
		}()
	}

	// The kills, at sorted random moments within the load.
	kills := 3 + rng.IntN(3)
	var killAt []time.Duration
	for range kills {
		killAt = append(killAt, time.Duration(300+rng.IntN(int(loadFor/time.Millisecond)-300))*time.Millisecond)
	}
	slices.Sort(killAt)
	t.Logf("%d kills at %v into the load", kills, killAt)
	var killTimes []time.Time
	killerDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(killerDone)
		for _, at := range killAt {
			time.Sleep(time.Until(start.Add(at)))
			killTimes = append(killTimes, time.Now())
			if err := r.signal(syscall.SIGKILL, 5*time.Second); err != nil {
				t.Errorf("kill: %v", err)
				return
			}
			// Restart at once or after a short pause, like a kubelet would.
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			if err := r.start(); err != nil {
				t.Errorf("restart: %v", err)
				return
			}
		}
	}()

	interval := loadFor / n
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case work <- i:
		case <-ctx.Done():
			t.Fatalf("load did not keep up: %v", ctx.Err())
		}
	}
	close(work)
	wg.Wait()
	<-killerDone
	r.waitReady()
	ackedCount := 0
	for i := range n {
		if acked[i].Load() {
			ackedCount++
		}
	}
	t.Logf("load: %d notifications, %d acknowledged, %d posts, %d non-200 answers, %d unanswered", n, ackedCount, attempts.Load(), non200.Load(), failed.Load())
	if ackedCount != n {
		t.Errorf("%d notifications never acknowledged within the bound", n-ackedCount)
	}

	// Wait for the relay to finish everything it accepted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		q, err1 := r.gauge("mailrelay_queue_messages")
		if err1 == nil && q == 0 && countIDs(ses.Sent()) >= ackedCount {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not finish: queue %v (%v), %d distinct forwarded of %d acknowledged; log:\n%s", q, err1, countIDs(ses.Sent()), ackedCount, r.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dl, err := r.gauge("mailrelay_deadletter_messages"); err != nil || dl != 0 {
		t.Errorf("dead letters %v (%v), want 0; log:\n%s", dl, err, r.logTail())
	}
	if err := r.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Error(err)
	}

	// Exactly once, by Message-ID.
	sends := map[string][]time.Time{}
	for _, s := range ses.Sent() {
		id := messageID(s.Raw)
		if id == "" {
			t.Errorf("forwarded mail without Message-ID: %q", s.Raw[:min(200, len(s.Raw))])
			continue
		}
		sends[id] = append(sends[id], s.At)
	}
	windowDups := 0
	for i := range n {
		id := fmt.Sprintf("chaos-%d@example.net", i)
		at := sends[id]
		switch {
		case acked[i].Load() && len(at) == 0:
			t.Errorf("notification %d acknowledged but never forwarded (lost)", i)
		case len(at) > 1:
			if straddlesKill(at, killTimes) {
				windowDups += len(at) - 1
				t.Logf("notification %d forwarded %d times at %v across a kill at %v (the duplicate window)", i, len(at), rel(start, at), rel(start, killTimes))
			} else {
				t.Errorf("notification %d forwarded %d times at %v without a kill in between (kills at %v)", i, len(at), rel(start, at), rel(start, killTimes))
			}
		}
		delete(sends, id)
	}
	for id := range sends {
		t.Errorf("forwarded a mail that was never posted: %s", id)
	}
	// Each kill can catch at most one send in flight per worker.
	if max := len(killTimes) * workers; windowDups > max {
		t.Errorf("%d duplicates across %d kills: more than one send in flight per worker (%d)", windowDups, len(killTimes), workers)
	}
	t.Logf("kills %d, restarts %d, duplicates from the window (an SES send in flight or accepted, its sent-record not yet fsync'd): %d", len(killTimes), r.starts-1, windowDups)
}

// straddlesKill reports whether a kill can explain the repeated sends at:
// one happened after the first send's request could have left the relay
// (its accept time less inFlight, a bound on the SES call seen from the
// stand-in) and before the last send. A request in flight when the relay
// dies may still be accepted by SES a moment after the kill.
func straddlesKill(at []time.Time, kills []time.Time) bool {
	const inFlight = 500 * time.Millisecond
	first, last := slices.MinFunc(at, time.Time.Compare), slices.MaxFunc(at, time.Time.Compare)
	for _, k := range kills {
		if !k.Before(first.Add(-inFlight)) && !k.After(last) {
			return true
		}
	}
	return false
}

// rel returns times as offsets from start, for messages.
func rel(start time.Time, ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(start).Round(time.Millisecond)
	}
	return out
}
