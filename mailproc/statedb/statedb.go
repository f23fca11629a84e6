// Package statedb is the relay's connection to its shared PostgreSQL state:
// a pgx connection pool sized from the worker count, every call through a
// circuit breaker with its own deadline and timed in
// mailrelay_external_call_duration_seconds{service="postgres"}, errors
// classified transient or permanent (mailproc/failure), and the schema's
// versioned migrations (goose, embedded SQL, an advisory lock so that
// replicas starting together apply them once).
//
// The packages that keep state in PostgreSQL (pgqueue, ...) run their SQL
// through DB.Do.
package statedb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Service is the service label of the database's metrics and breaker.
const Service = "postgres"

// Defaults for Options fields left zero.
const (
	DefaultCallTimeout        = 5 * time.Second
	DefaultBreakerFailures    = 5
	DefaultBreakerOpenTimeout = 10 * time.Second
	// connsOverWorkers is what the pool holds beyond one connection per
	// worker: concurrent intake writes (Put), the lease heartbeat, the
	// stats refresh and pruning.
	connsOverWorkers = 8
)

// Options configures Open.
type Options struct {
	URL string // postgres://… (required)
	// Workers sizes the pool: Workers + 8 connections (default 4 workers).
	Workers int
	// CallTimeout bounds each call (default DefaultCallTimeout).
	CallTimeout time.Duration
	// BreakerFailures consecutive transient failures open the breaker
	// (default 5); it lets a trial call through after BreakerOpenTimeout
	// (default 10 s).
	BreakerFailures    uint32
	BreakerOpenTimeout time.Duration
	Metrics            *telemetry.Metrics // optional
	Logger             *slog.Logger       // optional
}

// DB is an open pool with its breaker. Safe for concurrent use.
type DB struct {
	pool    *pgxpool.Pool
	breaker *gobreaker.CircuitBreaker[struct{}]
	timeout time.Duration
	metrics *telemetry.Metrics
	log     *slog.Logger
}

// PoolSize is the number of connections of a pool for workers workers.
func PoolSize(workers int) int32 {
	if workers <= 0 {
		workers = 4
	}
	return int32(workers + connsOverWorkers)
}

// Open creates the pool. It does not wait for the database: connections are
// made on first use, so a relay starts (not ready) while PostgreSQL is down.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.URL == "" {
		return nil, errors.New("statedb: no database URL")
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		// The URL may hold a password: pgx's parse errors redact it.
		return nil, fmt.Errorf("statedb: database URL: %w", err)
	}
	cfg.MaxConns = PoolSize(o.Workers)
	cfg.MinConns = 0
	cfg.HealthCheckPeriod = 15 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > o.callTimeout() {
		cfg.ConnConfig.ConnectTimeout = o.callTimeout()
	}
	// Acknowledged means committed: never let a server or role default
	// weaken it.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mailrelay"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("statedb: %w", err)
	}
	d := &DB{pool: pool, timeout: o.callTimeout(), metrics: o.Metrics, log: o.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.breaker = newBreaker(o, d.log)
	return d, nil
}

func (o Options) callTimeout() time.Duration {
	if o.CallTimeout > 0 {
		return o.CallTimeout
	}
	return DefaultCallTimeout
}

// newBreaker returns the database's breaker: it opens after consecutive
// transient failures and counts permanent errors (a constraint, bad input)
// as answers.
func newBreaker(o Options, log *slog.Logger) *gobreaker.CircuitBreaker[struct{}] {
	failures := o.BreakerFailures
	if failures == 0 {
		failures = DefaultBreakerFailures
	}
	open := o.BreakerOpenTimeout
	if open <= 0 {
		open = DefaultBreakerOpenTimeout
	}
	var gauge interface{ Set(float64) }
	if o.Metrics != nil {
		gauge = o.Metrics.BreakerState.WithLabelValues(Service)
		gauge.Set(0)
	}
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        Service,
		MaxRequests: 1,
		Timeout:     open,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			return err == nil || failure.IsPermanent(err)
		},
		IsExcluded: func(err error) bool {
			var cg *callerGone
			return errors.As(err, &cg)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if gauge != nil {
				gauge.Set(map[gobreaker.State]float64{gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2}[to])
			}
			lvl := slog.LevelWarn
			if to == gobreaker.StateClosed {
				lvl = slog.LevelInfo
			}
			log.Log(context.Background(), lvl, "circuit breaker state change", "dependency", Service, "from", from.String(), "to", to.String())
		},
	})
}

// callerGone marks an error caused by the caller's own context ending: the
// breaker ignores it.
type callerGone struct{ err error }

func (e *callerGone) Error() string { return e.err.Error() }
func (e *callerGone) Unwrap() error { return e.err }

// ErrUnavailable is wrapped by errors of calls refused by the open breaker.
var ErrUnavailable = errors.New("statedb: database unavailable")

// Do runs fn through the breaker with a deadline of the call timeout inside
// ctx, times it as operation op, and returns its error classified (see
// Classify). fn uses the pool it is given.
func (d *DB) Do(ctx context.Context, op string, fn func(ctx context.Context, pool *pgxpool.Pool) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	_, err := d.breaker.Execute(func() (struct{}, error) {
		opctx, cancel := context.WithTimeout(ctx, d.timeout)
		defer cancel()
		err := fn(opctx, d.pool)
		if err != nil && ctx.Err() != nil {
			return struct{}{}, &callerGone{err}
		}
		return struct{}{}, Classify(err)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		d.observe(op, telemetry.OutcomeBreakerOpen, start)
		return failure.Transient(failure.ReasonBreakerOpen, fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err))
	}
	var cg *callerGone
	if errors.As(err, &cg) {
		err = cg.err
	}
	d.observe(op, outcome(err), start)
	if err != nil {
		return fmt.Errorf("postgres %s: %w", op, err)
	}
	return nil
}

func (d *DB) observe(op, outcome string, start time.Time) {
	if d.metrics != nil {
		d.metrics.ExternalCallDuration.WithLabelValues(Service, op, outcome).Observe(time.Since(start).Seconds())
	}
}

// Available reports whether a call would be let through by the breaker
// (closed, or half-open). It never touches the database.
func (d *DB) Available() bool { return d.breaker.State() != gobreaker.StateOpen }

// Pool returns the underlying pool (migrations, tests).
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// Close closes the pool, waiting for connections in use to be returned.
func (d *DB) Close() { d.pool.Close() }
