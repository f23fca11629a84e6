package relaytest

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// TestArgs are the `mailrelay serve` flags Start puts before
// Options.Args: a small pool, fast retries, short timeouts and a short
// grace period, so that tests finish quickly.
var TestArgs = []string{
	"--workers", "4", "--retry-min", "50ms", "--retry-max", "200ms", "--shutdown-timeout", "5s",
	"--s3-timeout", "2s", "--ses-timeout", "2s",
}

// Harness is an Env for one test: a failure to start or deliver fails the
// test, the relay's warnings go to the test log, and everything is stopped
// when the test ends.
type Harness struct {
	*Env
	t testing.TB
}

// Start starts an Env with TestArgs and the relay for t, with Dir a
// temporary directory of the test unless opts names one.
func Start(t testing.TB, opts Options) *Harness {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Args = append(append([]string(nil), TestArgs...), opts.Args...)
	if opts.Logger == nil {
		opts.Logger = TestLogger(t)
	}
	env, err := NewEnv(opts)
	if err != nil {
		t.Fatalf("relaytest: %v", err)
	}
	h := &Harness{Env: env, t: t}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("relay exited with %v", err)
		}
	})
	h.Restart()
	return h
}

// Restart runs the relay again on the same spool and configuration (or
// for the first time).
func (h *Harness) Restart() {
	h.t.Helper()
	if err := h.Env.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// Shutdown stops the relay as SIGTERM would and waits for it (at most 15 s
// beyond the grace period); an error from Serve fails the test.
func (h *Harness) Shutdown() {
	h.t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.Env.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			h.t.Errorf("relay exited with %v", err)
		}
	case <-time.After(h.Config.ShutdownTimeout + 15*time.Second):
		h.t.Error("relay did not stop in time")
	}
}

// NewSES starts another SES stand-in with opts (closed when the test ends)
// and makes the relay send to it from its next Restart on (see
// Env.UseSES).
func (h *Harness) NewSES(opts fakes.SESOptions) *fakes.SES {
	h.t.Helper()
	ses := fakes.NewSES(opts)
	if err := ses.Start(""); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(ses.Close)
	h.UseSES(ses)
	return ses
}

// Post sends body to /sns and returns the status code.
func (h *Harness) Post(body []byte) int {
	h.t.Helper()
	code, _, err := h.Env.Post(context.Background(), body)
	if err != nil {
		h.t.Fatal(err)
	}
	return code
}

// Deliver stores mail in S3 and posts its signed notification; it must be
// acknowledged (200).
func (h *Harness) Deliver(snsID, sesID string, mail []byte, recipients ...string) {
	h.t.Helper()
	code, answer, err := h.Env.Deliver(context.Background(), snsID, sesID, mail, recipients...)
	if err != nil {
		h.t.Fatal(err)
	}
	if code != http.StatusOK {
		h.t.Fatalf("delivery %s answered %d (%q), want 200", snsID, code, answer)
	}
}

// WaitSent waits (at most 20 s) until the SES stand-in has recorded n
// sends and returns them all.
func (h *Harness) WaitSent(n int) []fakes.Sent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.SES.WaitSent(ctx, n); err != nil {
		h.t.Fatalf("waiting for %d sends (have %d): %v", n, len(h.SES.Sent()), err)
	}
	return h.SES.Sent()
}

// WaitFor polls cond until it holds, failing t after 20 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLogger logs warnings and errors to t's log.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
