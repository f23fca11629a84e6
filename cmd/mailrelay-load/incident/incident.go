// Package incident replays incident 004 (a slow S3 held every inbound
// connection, SNS retried, health checks starved, Kubernetes killed every
// pod) against the real relay, in-process and on loopback only, and reports
// whether the relay kept its promises.
//
// Run starts the relay (relay.Serve) with the S3 and SES stand-ins of
// package fakes behind fault injectors (latency, hang, connection reset, 500,
// throttling, each for a window of time), then drives it with
//
//   - an open-loop load generator: signed SNS notifications at a fixed rate,
//     each delivery in its own goroutine (bounded in number), retried like
//     SNS retries a 5xx, 429 or timeout;
//   - a prober: GET /livez and /readyz every 100 ms with a 1 s timeout, on a
//     client of its own that opens a new connection per probe, as kubelet
//     does;
//   - a poller: breaker states from the metrics registry, spool size.
//
// After the load it waits (bounded) for the relay to forward everything it
// acknowledged, and compares what the SES stand-in received with what was
// acknowledged: every acknowledged mail must be forwarded, each copy once.
package incident

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Topic and bucket of the replay, and the forwarding of relaytest's default
// aliases: shop@ to one copy, news@ to one copy for two recipients.
const (
	topicARN = "arn:aws:sns:us-east-1:123456789012:mailrelay-incident"
	bucket   = "mailrelay-incident"

	shopCopy = "alice@example.org"
	newsCopy = "bob@example.org,carol@example.org"
)

// Bounds of a scenario: a replay is bounded in time and count.
const (
	MaxRate          = 5000
	MaxDuration      = 30 * time.Minute
	MaxNotifications = 250_000 // each is signed and held in memory before the load
)

// RelaySettings are the relay's settings for a scenario. Zero values are
// the relay's own defaults (those of `mailrelay serve`); the report shows
// the values in effect.
type RelaySettings struct {
	Workers          int
	SpoolMaxMessages int
	SpoolMaxBytes    int64
	S3Timeout        time.Duration
	SESTimeout       time.Duration
	RetryMin         time.Duration
	RetryMax         time.Duration
	InboundMaxConns  int
	// AWSMaxAttempts is the SDK's attempts per call (1 or 2).
	AWSMaxAttempts int
	// BreakerFailures and BreakerOpenTimeout configure both circuit
	// breakers (awsclient.BreakerSettings).
	BreakerFailures    uint32
	BreakerOpenTimeout time.Duration
	// Args are further `mailrelay serve` flags, applied after the above.
	Args []string
}

// Scenario is one replay.
type Scenario struct {
	// Rate is notifications per second, Duration how long they are sent.
	Rate     int
	Duration time.Duration
	// Faults are the fault windows, relative to the start of the load;
	// each must end by Duration.
	Faults []Phase
	Relay  RelaySettings

	// MaxInFlight bounds deliveries in progress (including those waiting
	// to retry); a notification due while it is reached is not sent and
	// counted as skipped: the generator never slows down. Default:
	// 5 s worth of notifications, at least 64.
	MaxInFlight int
	// AckTimeout is how long a delivery waits for an answer (SNS: 15 s).
	AckTimeout time.Duration
	// RetryDelay is the pause before a delivery is retried after a 5xx,
	// 429 or timeout (default 1 s); MaxAttempts bounds the attempts per
	// notification (default 10). SNS discards a notification answered
	// with any other 4xx, and so does the generator.
	RetryDelay  time.Duration
	MaxAttempts int
	// DrainTimeout bounds the wait, after the load, for the relay to
	// forward everything it acknowledged (default 2 min).
	DrainTimeout time.Duration
	// SecondCopyEvery makes every nth mail also go to a second alias, so
	// that it is forwarded as two copies (default 4; negative: never).
	SecondCopyEvery int

	// Logger receives the relay's log (nil: discarded).
	Logger *slog.Logger
	// Dir holds the spool and alias file (default: a temporary directory,
	// removed afterwards).
	Dir string
}

// withDefaults fills in the generator's defaults.
func (s Scenario) withDefaults() Scenario {
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = max(64, 5*s.Rate)
	}
	if s.AckTimeout <= 0 {
		s.AckTimeout = 15 * time.Second
	}
	if s.RetryDelay <= 0 {
		s.RetryDelay = time.Second
	}
	if s.MaxAttempts <= 0 {
		s.MaxAttempts = 10
	}
	if s.DrainTimeout <= 0 {
		s.DrainTimeout = 2 * time.Minute
	}
	if s.SecondCopyEvery == 0 {
		s.SecondCopyEvery = 4
	}
	return s
}

// Validate checks the bounds of a scenario.
func (s Scenario) Validate() error {
	var errs []error
	if s.Rate < 1 || s.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("rate %d: want 1..%d", s.Rate, MaxRate))
	}
	if s.Duration <= 0 || s.Duration > MaxDuration {
		errs = append(errs, fmt.Errorf("duration %s: want (0, %s]", s.Duration, MaxDuration))
	}
	if n := s.notifications(); n > MaxNotifications {
		errs = append(errs, fmt.Errorf("%d notifications: at most %d", n, MaxNotifications))
	}
	if len(s.Faults) > maxPhases {
		errs = append(errs, fmt.Errorf("%d fault phases: at most %d", len(s.Faults), maxPhases))
	}
	for _, p := range s.Faults {
		if p.Target != TargetS3 && p.Target != TargetSES {
			errs = append(errs, fmt.Errorf("fault %s: unknown target", p))
		}
		switch p.Kind {
		case KindLatency:
			if p.Latency <= 0 {
				errs = append(errs, fmt.Errorf("fault %s: latency must be positive", p))
			}
		case KindHang, KindReset, KindStatus500, KindThrottle:
		default:
			errs = append(errs, fmt.Errorf("fault %s: unknown kind", p))
		}
		if p.Start < 0 || p.Length <= 0 || p.End() > s.Duration {
			errs = append(errs, fmt.Errorf("fault %s: must lie within the load's %s", p, s.Duration))
		}
	}
	if s.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("max attempts %d: at most 100", s.MaxAttempts))
	}
	if s.DrainTimeout > time.Hour || s.AckTimeout > time.Minute || s.RetryDelay > time.Minute {
		errs = append(errs, errors.New("drain timeout at most 1h, ack timeout and retry delay at most 1m"))
	}
	return errors.Join(errs...)
}

// notifications is the number of notifications the load sends.
func (s Scenario) notifications() int {
	return int(float64(s.Rate) * s.Duration.Seconds())
}

// faultEnd is when the last fault phase ends (0 without faults).
func (s Scenario) faultEnd() time.Duration {
	var end time.Duration
	for _, p := range s.Faults {
		end = max(end, p.End())
	}
	return end
}

// env is a running relay with its stand-ins (relaytest), the fault
// injectors in front of them and what the replay observes.
type env struct {
	*relaytest.Env
	s3f, sesf *faultServer
	metrics   *telemetry.Metrics
	breaker   awsclient.BreakerSettings
	sends     *sendTracker
}

func (e *env) close() {
	if e.Env != nil {
		_ = e.Env.Close()
	}
}

// Run replays s and reports what happened. The error is for a replay that
// could not be carried out (bad scenario, relay did not start, ctx ended);
// a relay that broke its promises is a Report with Problems.
func Run(ctx context.Context, s Scenario) (*Report, error) {
	s = s.withDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("incident: scenario: %w", err)
	}
	e, err := start(ctx, s)
	if e != nil {
		defer e.close()
	}
	if err != nil {
		return nil, err
	}

	gen := newGenerator(s, e)
	if err := gen.prepare(ctx); err != nil {
		return nil, err
	}
	mon := startMonitors(e)
	t0 := time.Now()
	e.s3f.begin(t0)
	e.sesf.begin(t0)
	mon.begin(t0)
	gen.run(ctx, t0)
	loadEnd := time.Since(t0)
	gen.wait()
	if err := ctx.Err(); err != nil {
		mon.stop()
		return nil, fmt.Errorf("incident: %w", err)
	}

	drained, drainAt := waitDrained(ctx, e, gen, s.DrainTimeout)
	gen.client.CloseIdleConnections()
	mon.stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("incident: %w", err)
	}
	r := buildReport(s, e, gen, mon, t0, loadEnd, drained, drainAt)
	return r, nil
}

// start brings up the stand-ins, the fault injectors and the relay. The
// returned env is to be closed even with an error.
func start(ctx context.Context, s Scenario) (*env, error) {
	rs := s.Relay
	e := &env{
		metrics: telemetry.NewMetrics(),
		sends:   newSendTracker(),
		breaker: awsclient.BreakerSettings{Failures: rs.BreakerFailures, OpenTimeout: rs.BreakerOpenTimeout},
	}
	args := []string{"--admin-listen", ""}
	for _, a := range []struct {
		flag string
		set  bool
		val  string
	}{
		{"workers", rs.Workers > 0, strconv.Itoa(rs.Workers)},
		{"spool-max-messages", rs.SpoolMaxMessages > 0, strconv.Itoa(rs.SpoolMaxMessages)},
		{"spool-max-bytes", rs.SpoolMaxBytes > 0, strconv.FormatInt(rs.SpoolMaxBytes, 10)},
		{"s3-timeout", rs.S3Timeout > 0, rs.S3Timeout.String()},
		{"ses-timeout", rs.SESTimeout > 0, rs.SESTimeout.String()},
		{"retry-min", rs.RetryMin > 0, rs.RetryMin.String()},
		{"retry-max", rs.RetryMax > 0, rs.RetryMax.String()},
		{"inbound-max-conns", rs.InboundMaxConns > 0, strconv.Itoa(rs.InboundMaxConns)},
		{"aws-max-attempts", rs.AWSMaxAttempts > 0, strconv.Itoa(rs.AWSMaxAttempts)},
	} {
		if a.set {
			args = append(args, "--"+a.flag, a.val)
		}
	}
	env, err := relaytest.NewEnv(relaytest.Options{
		Dir:      s.Dir,
		TopicARN: topicARN,
		Bucket:   bucket,
		Args:     append(args, rs.Args...),
		SES:      fakes.SESOptions{OnSend: e.sends.observe},
		// S3 through a reverse proxy behind the injector; SES is a
		// handler, served by the injector's server directly.
		FrontS3: func(s3 *fakes.S3) (string, func(), error) {
			s3URL, err := url.Parse(s3.URL())
			if err != nil {
				return "", nil, fmt.Errorf("s3 url: %w", err)
			}
			proxy := httputil.NewSingleHostReverseProxy(s3URL)
			proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
			proxy.ErrorLog = log.New(io.Discard, "", 0)
			return e.front(&e.s3f, newInjector(TargetS3, s.Faults, proxy))
		},
		FrontSES: func(ses *fakes.SES) (string, func(), error) {
			return e.front(&e.sesf, newInjector(TargetSES, s.Faults, ses))
		},
		Breaker:      e.breaker,
		Logger:       s.Logger,
		Metrics:      e.metrics,
		StartTimeout: 30 * time.Second,
	})
	if err != nil {
		return e, fmt.Errorf("incident: %w", err)
	}
	e.Env = env
	if err := env.Start(ctx); err != nil {
		return e, fmt.Errorf("incident: %w", err)
	}
	return e, nil
}

// front starts a fault server for in, kept in *f.
func (e *env) front(f **faultServer, in *injector) (string, func(), error) {
	fs, err := startFaultServer(in)
	if err != nil {
		return "", nil, err
	}
	*f = fs
	return fs.url, fs.close, nil
}

// waitDrained waits until the spool is empty and every copy of every
// acknowledged mail was forwarded, or timeout passes; drainAt is when that
// was seen, as an offset from the start of the load.
func waitDrained(ctx context.Context, e *env, gen *generator, timeout time.Duration) (drained bool, drainAt time.Duration) {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if e.Relay.Spool.Stats().Messages == 0 && e.sends.missing(gen.expected()) == 0 {
			return true, time.Since(gen.t0)
		}
		if time.Now().After(deadline) {
			return false, 0
		}
		select {
		case <-ctx.Done():
			return false, 0
		case <-t.C:
		}
	}
}

// newRunID returns a random id that makes this run's tokens unique.
func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
