package incident

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// testWriter sends the relay's log to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestIncidentReplay is the short replay of incident 004: 100 notifications
// per second for 6 s, SES throttling for 1 s, then S3 hanging for 3 s in the
// middle of the load. The relay must acknowledge every notification (SNS
// retries are emulated), keep health answering, and forward every
// acknowledged mail exactly once after the faults end.
func TestIncidentReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("replay takes about 10 s")
	}
	faults, err := ParseFaults("ses:throttle@500ms+1s,s3:hang@2s+3s")
	if err != nil {
		t.Fatal(err)
	}
	rate := 100
	if raceEnabled {
		// With the race detector the relay forwards fewer mails per
		// second than 100 on a small machine; the replay is about
		// correctness, so the load is scaled to what it can carry.
		rate = 25
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Run(ctx, Scenario{
		Rate:     rate,
		Duration: 6 * time.Second,
		Faults:   faults,
		Relay: RelaySettings{
			Workers:            4,
			S3Timeout:          time.Second,
			SESTimeout:         time.Second,
			RetryMin:           50 * time.Millisecond,
			RetryMax:           500 * time.Millisecond,
			BreakerOpenTimeout: time.Second,
		},
		AckTimeout:   5 * time.Second,
		RetryDelay:   200 * time.Millisecond,
		DrainTimeout: 15 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + r.String())

	n := 6 * rate
	if r.Notifications != n || r.Skipped != 0 {
		t.Errorf("notifications %d, skipped %d: want %d, 0", r.Notifications, r.Skipped, n)
	}
	if r.Acked != r.Notifications || r.Unacked != 0 || r.Rejected != 0 {
		t.Errorf("acknowledged %d of %d (unacked %d, rejected %d): every delivery must be acknowledged", r.Acked, r.Notifications, r.Unacked, r.Rejected)
	}
	if r.Lost != 0 || r.Duplicated != 0 || r.Unexpected != 0 {
		t.Errorf("lost %d, duplicated %d, unexpected %d: want 0, 0, 0", r.Lost, r.Duplicated, r.Unexpected)
	}
	// Every 4th mail has a second copy.
	if copies := n + (n+3)/4; r.ExpectedCopies != copies || r.Forwarded != copies {
		t.Errorf("copies expected %d, forwarded %d: want %d, %d", r.ExpectedCopies, r.Forwarded, copies, copies)
	}
	if !r.Drained || r.DeadLetters != 0 {
		t.Errorf("drained %v, dead letters %d: want the spool drained and nothing dead-lettered", r.Drained, r.DeadLetters)
	}
	if !r.FaultBacklogCleared {
		t.Errorf("mail acknowledged during the faults was not all forwarded")
	}
	// A correctness bound, not a performance claim: the prober's timeout
	// is 1 s, and health must never get near it.
	if r.HealthFailures != 0 || r.Health.P99 >= time.Second || r.Health.N < 100 {
		t.Errorf("health: %d failures, p99 %s over %d probes: want 0 failures, p99 < 1s, probes throughout", r.HealthFailures, r.Health.P99, r.Health.N)
	}
	// The faults must really have happened, or the test proves nothing.
	for _, h := range r.FaultHits {
		if h.Hits == 0 {
			t.Errorf("fault %s hit no request", h.Phase)
		}
	}
	if r.BreakerTransitions["s3"] == 0 {
		t.Errorf("the S3 breaker never changed state during a 3 s hang")
	}
	if p := r.Problems(); len(p) != 0 {
		t.Errorf("problems: %q", p)
	}
}
