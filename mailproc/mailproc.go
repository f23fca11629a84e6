// Package mailproc is the relay's bounded worker pool. Each worker takes a
// due notification from the spool and carries it through
//
//	receipt verdicts → envelope sender → route (aliases) → fetch (S3 or
//	inline) → loop rules → rewrite → send (SES) → mark sent → delete the
//	S3 object → complete
//
// Mail that would loop is dropped, not forwarded: an empty envelope sender
// (empty_sender), a delivery status notification (delivery_report),
// Auto-Submitted other than "no" (auto_submitted), and mail carrying the
// loop marker every copy gets (X-Mailrelay-Loop: <alias domain>; loop). A
// recipient or destination SES could not take is dropped at once
// (invalid_recipient), never retried.
//
// Transient failures go back to the spool with exponential backoff and
// jitter; permanent ones are dead-lettered with their reason. Everything the
// pool needs from the outside is a small interface defined here, so that the
// alias store, the intake and the sender can be replaced without touching it.
// It knows nothing of HTTP, SNS or the AWS SDK.
package mailproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/reply"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Queue is where work comes from and where its outcome is recorded
// (implemented by *spool.Spool).
type Queue interface {
	Next(ctx context.Context) (spool.Entry, error)
	MarkSent(id, key, sesMessageID string) error
	Retry(id string, at time.Time, reason string) error
	Release(id string)
	Complete(id string) error
	DeadLetter(id, reason string) error
}

// ObjectStore holds the raw mail SES received (S3).
type ObjectStore interface {
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	Delete(ctx context.Context, bucket, key string) error
}

// Sender hands a rewritten mail to the outbound service (SES). raw is only
// valid during the call: the pool reuses its buffer for the next copy.
type Sender interface {
	SendRaw(ctx context.Context, from string, destinations []string, raw []byte) (messageID string, err error)
}

// Resolver maps a recipient to its alias and destinations. It returns
// aliases.ErrNotOurDomain or aliases.ErrUnknownAlias for mail that has
// nowhere to go.
type Resolver interface {
	Resolve(ctx context.Context, address string) (aliases.Route, error)
}

// availability is implemented by dependencies behind a circuit breaker
// (awsclient's S3 and SES, the PostgreSQL queue): false while the breaker
// is open, and the workers take no new work meanwhile.
type availability interface{ Available() bool }

// Policy says what the receipt verdicts do to a mail and what else to do.
//
// Each check has an Action (forward, tag or drop) for mail whose verdict is
// FAIL (for DMARC: FAIL with the sender's policy reject, or quarantine).
// An Action left ActionDefault is, for virus, spam and DMARC reject, drop
// when the matching Drop* is on and forward when it is off (the operator
// flags --drop-virus, --drop-spam, --drop-dmarc-reject keep their meaning);
// for DMARC quarantine tag; for SPF and DKIM forward. The first check that
// drops (in the order virus, spam, DMARC reject, DMARC quarantine, SPF,
// DKIM) decides; tagged mail gets SubjectTag once.
type Policy struct {
	DropSpam              bool
	DropVirus             bool
	DropDMARCReject       bool
	VirusAction           Action
	SpamAction            Action
	DMARCRejectAction     Action
	DMARCQuarantineAction Action
	SPFAction             Action
	DKIMAction            Action
	// SubjectTag is put in front of the Subject of tagged mail
	// (DefaultSubjectTag when empty).
	SubjectTag        string
	DeadLetterUnknown bool // dead-letter mail with no known recipient instead of dropping it
	DeleteObjects     bool // delete the S3 object once a mail is finished
	MaxMessageBytes   int64
	DisplaySuffix     string
	// HoldUnverified dead-letters (reason unverified) a mail whose spam,
	// virus, DMARC, SPF or DKIM verdict is PROCESSING_FAILED while the
	// check's action is drop, instead of forwarding it: the check the policy relies on was
	// not done. Reconcile marks every verdict of the mail it hands over so
	// (it cannot know them); SES does when a check failed. Default
	// DefaultHoldUnverified.
	HoldUnverified bool
}

// DefaultHoldUnverified is Policy.HoldUnverified's default: off, so that
// reconciled mail is forwarded as it would have been with the verdicts
// unknown; on, it waits in the dead letters for an operator.
const DefaultHoldUnverified = false

// Defaults of Config, applied by New for zero values; cmd's configuration
// uses the same constants.
const (
	DefaultAttemptTimeout        = 2 * time.Minute
	DefaultRetryMin              = 2 * time.Second
	DefaultRetryMax              = 5 * time.Minute
	DefaultRetryMaxAge           = 24 * time.Hour
	DefaultBreakerDelay          = 10 * time.Second
	DefaultMaxMessageBytes int64 = 10 << 20 // SES v1's limit for one sent mail
)

// Config configures a Pool.
type Config struct {
	Workers int
	Queue   Queue
	Objects ObjectStore
	Sender  Sender
	Aliases Resolver
	Policy  Policy
	// Replies, when not nil, makes reply addresses: the Reply-To of every
	// forwarded copy, and mail to one is a reply (see replies.go). Nil:
	// Reply-To is the original sender and reply addresses are not
	// recognised.
	Replies *reply.Codec
	// AliasEvents, if not nil, counts per-alias events (aliasstate.go).
	AliasEvents AliasEvents
	// Pacer, when set, paces the sends (see Pacer).
	Pacer Pacer
	// Feedback, when set, handles SES feedback (see Feedback).
	Feedback Feedback
	// IntakeActive, when set, counts the notifications the intake is
	// acknowledging; the workers give way to them when the CPU is short
	// (see giveway.go).
	IntakeActive func() int64

	// Attempt bounds one processing attempt (fetch + all sends).
	AttemptTimeout time.Duration
	// RetryMin, RetryMax: exponential backoff bounds (full jitter).
	RetryMin, RetryMax time.Duration
	// RetryMaxAge: a message failing for longer is dead-lettered.
	RetryMaxAge time.Duration
	// BreakerDelay is how long a mail waits when a dependency's breaker is
	// open (jittered over its upper half; default DefaultBreakerDelay). It does not grow
	// with attempts: once the breaker closes, waiting mail goes at once
	// instead of sitting out an exponential backoff it never earned.
	BreakerDelay time.Duration
	// InFlightBytes bounds the raw mail bytes held by all workers at once.
	InFlightBytes int64

	Metrics *telemetry.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// Pool runs the workers.
type Pool struct {
	cfg    Config
	budget *byteBudget
	wg     sync.WaitGroup
	stop   context.CancelFunc
	log    *slog.Logger
	logs   bool       // log is enabled at some level (the highest, Error, included)
	addrs  addrCache  // validAddress answers
	lane   sync.Mutex // held by the one worker taking mail while the intake comes first (giveway.go)
}

// New validates cfg and returns a pool that is not yet running.
func New(cfg Config) (*Pool, error) {
	if cfg.Queue == nil || cfg.Objects == nil || cfg.Sender == nil || cfg.Aliases == nil || cfg.Metrics == nil {
		return nil, errors.New("mailproc: Queue, Objects, Sender, Aliases and Metrics are required")
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.RetryMaxAge <= 0 {
		cfg.RetryMaxAge = DefaultRetryMaxAge
	}
	if cfg.BreakerDelay <= 0 {
		cfg.BreakerDelay = DefaultBreakerDelay
	}
	if cfg.Policy.MaxMessageBytes <= 0 {
		cfg.Policy.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.InFlightBytes < cfg.Policy.MaxMessageBytes {
		cfg.InFlightBytes = cfg.Policy.MaxMessageBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pool{cfg: cfg, budget: newByteBudget(cfg.InFlightBytes, cfg.Metrics.InFlightBytes), log: mailLogger(cfg.Logger),
		logs: cfg.Logger.Enabled(context.Background(), slog.LevelError)}, nil
}

// Start launches the workers. They take new work until Stop; work in
// progress runs under ctx (cancel it to abandon work, which then stays in
// the spool).
func (p *Pool) Start(ctx context.Context) {
	takeCtx, stop := context.WithCancel(ctx)
	p.stop = stop
	for i := 0; i < p.cfg.Workers; i++ {
		p.wg.Add(1)
		go p.worker(takeCtx, ctx)
	}
}

// Stop makes the workers take no new work and waits until those in progress
// finish, or until ctx ends (then the work context given to Start should be
// canceled by the caller so they return; unfinished entries stay spooled).
func (p *Pool) Stop(ctx context.Context) error {
	if p.stop != nil {
		p.stop()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait waits for every worker to return.
func (p *Pool) Wait() { p.wg.Wait() }

func (p *Pool) worker(takeCtx, workCtx context.Context) {
	defer p.wg.Done()
	for {
		if !p.waitAvailable(takeCtx) {
			return
		}
		single := p.giveWay() // giveway.go
		e, err := p.cfg.Queue.Next(takeCtx)
		if err != nil {
			if single {
				p.lane.Unlock()
			}
			if takeCtx.Err() != nil || errors.Is(err, spool.ErrClosed) {
				return
			}
			p.log.Error("spool next failed", "err", err)
			select {
			case <-takeCtx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		p.handle(workCtx, e)
		if single {
			p.lane.Unlock()
		}
	}
}

// pausePoll is how often a paused worker looks at the breakers again.
const pausePoll = 250 * time.Millisecond

// waitAvailable pauses the worker while S3's or SES's breaker is open: the
// mail stays in the spool untouched (no attempt used, no write, no log
// line), instead of every worker taking entries only to postpone them. It
// resumes when a breaker lets a trial call through (half-open). It returns
// false when ctx ends.
func (p *Pool) waitAvailable(ctx context.Context) bool {
	for !p.available() || !p.paceAvailable() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pausePoll):
		}
	}
	return ctx.Err() == nil
}

func (p *Pool) available() bool {
	for _, dep := range []any{p.cfg.Sender, p.cfg.Objects, p.cfg.Queue} {
		if a, ok := dep.(availability); ok && !a.Available() {
			return false
		}
	}
	return true
}

// handle runs one attempt and records its outcome in the queue.
func (p *Pool) handle(ctx context.Context, e spool.Entry) {
	start := p.cfg.Now()
	log := p.log
	if p.logs { // With formats its attributes at once: not for a logger that discards everything
		log = log.With("sns_message_id", e.ID, "attempt", e.Attempts+1)
	}
	var res result
	func() {
		defer func() {
			if r := recover(); r != nil {
				p.cfg.Metrics.Panics.WithLabelValues("mailproc").Inc()
				log.Error("panic while processing", "panic", r, "stack", string(debug.Stack()))
				res = result{err: failure.Transient(failure.ReasonPanic, fmt.Errorf("panic: %v", r))}
			}
		}()
		actx, cancel := context.WithTimeout(ctx, p.cfg.AttemptTimeout)
		defer cancel()
		res = p.process(actx, e, log)
	}()
	p.cfg.Metrics.ProcessDuration.Observe(p.cfg.Now().Sub(start).Seconds())
	p.settle(ctx, e, res, log)
}

// settle records the outcome of an attempt.
func (p *Pool) settle(ctx context.Context, e spool.Entry, res result, log *slog.Logger) {
	m := p.cfg.Metrics.Messages
	q := p.cfg.Queue
	if res.sesID != "" && p.logs {
		log = log.With("ses_message_id", res.sesID)
	}
	switch {
	case res.err == nil:
		if err := q.Complete(e.ID); err != nil {
			// Stays pending; the next attempt finds every copy marked sent.
			log.Error("spool complete failed", "err", err)
			q.Release(e.ID)
			return
		}
		if res.outcome != "" {
			m.WithLabelValues(res.outcome, string(res.reason)).Inc()
		}
		for _, reason := range res.dropped {
			m.WithLabelValues(telemetry.MsgDropped, string(reason)).Inc()
		}
		if log.Enabled(context.Background(), slog.LevelInfo) { // log.Info's own test, before its arguments are boxed
			log.Info("finished", "outcome", res.outcome, "reason", res.reason, "sent", res.sent, "dropped", res.dropped)
		}

	case ctx.Err() != nil && !failure.IsPermanent(res.err):
		// Shutting down: leave the entry for the next start, no attempt used.
		q.Release(e.ID)
		log.Info("left in spool at shutdown", "err", res.err)

	case failure.IsPermanent(res.err):
		reason := failure.ReasonOf(res.err)
		if err := q.DeadLetter(e.ID, withReason(reason, res.err)); err != nil {
			log.Error("dead-letter failed", "err", err)
			q.Release(e.ID)
			return
		}
		m.WithLabelValues(telemetry.MsgDeadLettered, string(reason)).Inc()
		log.Warn("dead-lettered", "reason", reason, "err", res.err)

	default:
		reason := failure.ReasonOf(res.err)
		if p.cfg.Now().Sub(e.EnqueuedAt) > p.cfg.RetryMaxAge {
			if err := q.DeadLetter(e.ID, string(failure.ReasonRetriesExhausted)+": "+withReason(reason, res.err)); err != nil {
				log.Error("dead-letter failed", "err", err)
				q.Release(e.ID)
				return
			}
			m.WithLabelValues(telemetry.MsgDeadLettered, string(failure.ReasonRetriesExhausted)).Inc()
			log.Warn("dead-lettered after retrying too long", "reason", reason, "err", res.err)
			return
		}
		delay, level := p.backoff(e.Attempts), slog.LevelWarn
		if reason == failure.ReasonBreakerOpen {
			half := p.cfg.BreakerDelay / 2
			delay, level = half+rand.N(half+1), slog.LevelDebug
		}
		at := p.cfg.Now().Add(delay)
		if err := q.Retry(e.ID, at, withReason(reason, res.err)); err != nil {
			log.Error("spool retry failed", "err", err)
			q.Release(e.ID)
			return
		}
		m.WithLabelValues(telemetry.MsgRetried, string(reason)).Inc()
		log.Log(ctx, level, "will retry", "reason", reason, "err", res.err, "at", at)
	}
}

// withReason is the text stored with an entry: the reason first (operators
// and alerts key on it), then the error, without saying the reason twice.
func withReason(reason failure.Reason, err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, string(reason)) {
		return msg
	}
	return string(reason) + ": " + msg
}

// backoff is exponential from RetryMin, capped at RetryMax, with full
// jitter over the upper half so retries of many messages spread out.
func (p *Pool) backoff(attempts int) time.Duration {
	d := p.cfg.RetryMin
	for i := 0; i < attempts && d < p.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, p.cfg.RetryMax)
	half := d / 2
	return half + rand.N(half+1)
}

// byteBudget is a weighted semaphore bounding raw mail held in memory.
type byteBudget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	limit int64
	used  int64
	gauge interface{ Set(float64) }
}

func newByteBudget(limit int64, gauge interface{ Set(float64) }) *byteBudget {
	b := &byteBudget{limit: limit, gauge: gauge}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits for n bytes of budget; n is at most the limit.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	n = min(n, b.limit)
	b.mu.Lock()
	if b.used+n <= b.limit { // the common case: no wait, nothing to set up
		b.used += n
		b.gauge.Set(float64(b.used))
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used+n > b.limit {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.cond.Wait()
	}
	b.used += n
	b.gauge.Set(float64(b.used))
	return nil
}

func (b *byteBudget) release(n int64) {
	n = min(n, b.limit)
	b.mu.Lock()
	b.used -= n
	b.gauge.Set(float64(b.used))
	b.cond.Broadcast()
	b.mu.Unlock()
}
