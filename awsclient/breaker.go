package awsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/telemetry"
)

// dependency is one external service (s3, ses): its breaker, timer and log.
type dependency struct {
	service string
	breaker *gobreaker.CircuitBreaker[struct{}]
	timer   *callTimer
	// maxHalfOpen is how many trial calls the half-open breaker lets through.
	maxHalfOpen uint32
	log         *slog.Logger
}

func newDependency(service string, o Options) *dependency {
	d := &dependency{
		service: service,
		timer:   &callTimer{service: service, metrics: o.Metrics},
		log:     o.Logger.With("dependency", service),
	}
	gauge := o.Metrics.BreakerState.WithLabelValues(service)
	gauge.Set(breakerGaugeValue(gobreaker.StateClosed))
	failures := o.Breaker.Failures
	d.maxHalfOpen = max(o.Breaker.HalfOpenMaxRequests, 1) // gobreaker's meaning of 0
	d.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        service,
		MaxRequests: o.Breaker.HalfOpenMaxRequests,
		Timeout:     o.Breaker.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= failures
		},
		// Success is "the dependency answered sensibly": nil, or a
		// permanent error (404, rejected mail) that says something about
		// the request, not about the service's health. SES's Throttling
		// too: SES is up and asks for a slower pace, which the relay's
		// pacer (mailproc/pace) gives it; opening the breaker would stop
		// every send for OpenTimeout instead.
		IsSuccessful: func(err error) bool {
			return err == nil || failure.IsPermanent(err) ||
				service == ServiceSES && failure.ReasonOf(err) == failure.ReasonSESThrottled
		},
		// A caller that went away (canceled, or its own deadline passed
		// first) tells nothing either way; excluded calls also free their
		// half-open slot.
		IsExcluded: func(err error) bool {
			var cg *callerGone
			return errors.As(err, &cg)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			gauge.Set(breakerGaugeValue(to))
			lvl := slog.LevelWarn
			if to == gobreaker.StateClosed {
				lvl = slog.LevelInfo
			}
			d.log.Log(context.Background(), lvl, "circuit breaker state change", "from", from.String(), "to", to.String())
		},
	})
	return d
}

// breakerGaugeValue is the mailrelay_breaker_state value of a state.
func breakerGaugeValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}

// callerGone marks an error that happened because the caller's context
// ended; the breaker excludes it.
type callerGone struct{ err error }

func (e *callerGone) Error() string { return e.err.Error() }
func (e *callerGone) Unwrap() error { return e.err }

// do runs fn through the breaker with its own deadline of timeout inside
// ctx, and returns its error classified.
func (d *dependency) do(ctx context.Context, op string, timeout time.Duration, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return Classify(d.service, err)
	}
	start := time.Now()
	_, err := d.breaker.Execute(func() (struct{}, error) {
		opctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err := Classify(d.service, fn(opctx))
		if err != nil && ctx.Err() != nil {
			return struct{}{}, &callerGone{err}
		}
		return struct{}{}, err
	})
	if err == gobreaker.ErrOpenState || err == gobreaker.ErrTooManyRequests {
		d.timer.observeOutcome(op, telemetry.OutcomeBreakerOpen, time.Since(start))
		return failure.Transient(failure.ReasonBreakerOpen, fmt.Errorf("%s %s: %w", d.service, op, err))
	}
	var cg *callerGone
	if errors.As(err, &cg) {
		return cg.err
	}
	return err
}

// State returns the breaker's current state.
func (d *dependency) state() gobreaker.State { return d.breaker.State() }

// available is true when a call would be let through: the breaker is
// closed, or half-open with its trial calls not yet all under way. While a
// half-open trial is in flight (up to the call's timeout) other callers
// would only be refused, so they are told to wait.
func (d *dependency) available() bool {
	switch d.breaker.State() {
	case gobreaker.StateClosed:
		return true
	case gobreaker.StateHalfOpen:
		return d.breaker.Counts().Requests < d.maxHalfOpen
	}
	return false
}

// Available reports whether S3 is worth calling (see dependency.available).
// The pool asks before taking mail, so that waiting mail costs nothing.
func (s *S3) Available() bool { return s.dep.available() }

// Available reports whether SES is worth calling (see dependency.available).
// The pool asks before downloading a mail it could not send.
func (s *SES) Available() bool { return s.dep.available() }
