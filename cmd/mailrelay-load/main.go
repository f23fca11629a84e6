// Command mailrelay-load replays incident 004 against the real relay,
// in-process and on loopback only: S3 and SES stand-ins behind fault
// injectors, signed SNS notifications at a steady rate, health probes every
// 100 ms. It prints a Markdown report and exits 1 if the relay lost or
// duplicated mail, failed a health probe, or did not drain.
//
//	mailrelay-load                                   the default replay (200/s for 2 min, S3 slow then hanging)
//	mailrelay-load -rate 100 -duration 30s -faults 's3:hang@10s+10s,ses:500@20s+5s'
//
// Faults are target:kind@start+length, with target s3 or ses and kind
// latency=DURATION, hang, reset, 500 or throttle; start counts from the
// beginning of the load.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay-load/incident"
)

// defaultFaults is the incident: S3 answers after 30 s (beyond every
// timeout) for 30 s, then does not answer at all for 20 s; the last 50 s of
// the load are recovery.
const defaultFaults = "s3:latency=30s@20s+30s,s3:hang@50s+20s"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "mailrelay-load:", err)
	}
	os.Exit(code)
}

// run parses args, replays and prints the report; the code is 0 for a
// pass, 1 for problems or errors, 2 for bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("mailrelay-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		s        incident.Scenario
		faults   string
		logLevel string
	)
	fs.IntVar(&s.Rate, "rate", 200, "notifications per second")
	fs.DurationVar(&s.Duration, "duration", 2*time.Minute, "how long the load runs")
	fs.StringVar(&faults, "faults", defaultFaults, "fault phases: target:kind@start+length,... (kind latency=D, hang, reset, 500, throttle; empty: none)")
	fs.IntVar(&s.Relay.Workers, "workers", 0, "relay workers (0: the relay's default)")
	fs.IntVar(&s.Relay.SpoolMaxMessages, "spool-max-messages", 0, "relay spool bound in messages (0: default)")
	fs.Int64Var(&s.Relay.SpoolMaxBytes, "spool-max-bytes", 0, "relay spool bound in bytes (0: default)")
	fs.DurationVar(&s.Relay.S3Timeout, "s3-timeout", 0, "relay S3 timeout (0: default)")
	fs.DurationVar(&s.Relay.SESTimeout, "ses-timeout", 0, "relay SES timeout (0: default)")
	fs.DurationVar(&s.Relay.RetryMin, "retry-min", 0, "relay first retry delay (0: default)")
	fs.DurationVar(&s.Relay.RetryMax, "retry-max", 0, "relay largest retry delay (0: default)")
	fs.IntVar(&s.Relay.InboundMaxConns, "inbound-max-conns", 0, "relay inbound connection limit (0: default)")
	fs.IntVar(&s.Relay.AWSMaxAttempts, "aws-max-attempts", 0, "relay SDK attempts per call, 1 or 2 (0: default)")
	var breakerFailures uint
	fs.UintVar(&breakerFailures, "breaker-failures", 0, "consecutive failures that open a breaker (0: default)")
	fs.DurationVar(&s.Relay.BreakerOpenTimeout, "breaker-open", 0, "how long a breaker stays open (0: default)")
	fs.IntVar(&s.MaxInFlight, "max-inflight", 0, "deliveries in progress at most (0: 5 s worth of the rate)")
	fs.DurationVar(&s.AckTimeout, "ack-timeout", 15*time.Second, "how long a delivery waits for its answer (SNS: 15s)")
	fs.DurationVar(&s.RetryDelay, "retry-delay", time.Second, "pause before a delivery is retried after a 5xx, 429 or timeout")
	fs.IntVar(&s.MaxAttempts, "attempts", 10, "attempts per notification")
	fs.DurationVar(&s.DrainTimeout, "drain-timeout", 6*time.Minute, "how long to wait after the load for the relay to forward everything")
	fs.StringVar(&logLevel, "log-level", "", "write the relay's log to stderr at this level (debug, info, warn, error; empty: no log)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mailrelay-load [flags] [-- mailrelay serve flags...]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	s.Relay.Args = fs.Args()
	s.Relay.BreakerFailures = uint32(min(breakerFailures, 1000))
	var err error
	if s.Faults, err = incident.ParseFaults(faults); err != nil {
		return 2, err
	}
	if logLevel != "" {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
			return 2, fmt.Errorf("-log-level: %w", err)
		}
		s.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	}

	fmt.Fprintf(stderr, "replaying: %d/s for %s, faults %q; this takes %s plus the drain (at most %s)\n",
		s.Rate, s.Duration, faults, s.Duration, s.DrainTimeout)
	r, err := incident.Run(ctx, s)
	if err != nil {
		return 1, err
	}
	fmt.Fprint(stdout, r.String())
	if p := r.Problems(); len(p) > 0 {
		return 1, errors.New(strings.Join(p, "; "))
	}
	return 0, nil
}
