// Package sqsintake is the relay's SQS intake: it reads an SQS queue that
// an SNS topic delivers to (raw message delivery off), verifies each SNS
// envelope exactly as POST /sns does — topic allow-list, certificate URL
// rule, signature, Timestamp age (measured at SQS's SentTimestamp) — and
// hands the notifications to the worker pool as a mailproc queue: Queue
// has the method set of mailproc.Queue (Next, MarkSent, Retry, Release,
// Complete, DeadLetter).
//
// The SQS message is the pending state: it is deleted only once its mail
// is forwarded (Complete) or dead-lettered (DeadLetter); a transient
// failure makes it visible again after the retry backoff (Retry), a
// shutdown at once (Release); while a worker holds it its visibility is
// extended (heartbeat). A message received too often is moved to the
// queue's dead-letter queue by SQS itself (redrive policy): the intake
// never deletes a message to avoid that.
//
// What SQS does not keep is kept in the Store (the local spool, or the
// queue in PostgreSQL shared by every replica, mailproc/pgqueue): the sent
// record of a message whose copies were partly sent (so a redelivery does
// not send them again), the de-duplication marker of a finished SNS
// MessageId (a redelivery, or the same notification delivered by HTTP too,
// is deleted without being sent again) and the dead letters. A message is
// stored as a held entry (spool.HeldDue): the spool never processes it on
// its own.
//
// It depends on no AWS SDK package: the SQS calls are the Client interface,
// implemented in cmd by awsclient's SQS client.
package sqsintake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Message is one message received from SQS.
type Message struct {
	ReceiptHandle string
	Body          []byte
	ReceiveCount  int       // ApproximateReceiveCount, 1 at the first receive
	SentAt        time.Time // SentTimestamp: when SNS put it in the queue
}

// Client is the SQS queue (implemented in cmd over awsclient's SQS client).
// Receive long-polls and returns at most a few messages, made invisible
// for visibility; none when its wait passed. Errors of all three are
// transient unless classified otherwise; the intake only logs and counts
// them.
type Client interface {
	Receive(ctx context.Context, visibility time.Duration) ([]Message, error)
	Delete(ctx context.Context, receiptHandle string) error
	ChangeVisibility(ctx context.Context, receiptHandle string, d time.Duration) error
}

// Store keeps what the queue does not: sent records, de-duplication
// markers and dead letters (implemented by *spool.Spool and, shared by
// replicas, *pgqueue.Queue).
type Store interface {
	Put(ctx context.Context, e spool.Entry) (duplicate bool, err error)
	Pending(id string) (spool.Entry, error)
	MarkSent(id, key, sesMessageID string) error
	Complete(id string) error
	DeadLetter(id, reason string) error
	Forget(id string) error
	DropHeld(cutoff time.Time, limit int, busy func(id string) bool) (int, error)
}

// Defaults of Config.
const (
	DefaultVisibility = 30 * time.Second
	DefaultRetryMin   = 2 * time.Second
	DefaultRetryMax   = 5 * time.Minute
	// DefaultHeldMaxAge is how long a held entry left behind (its message
	// finished by another replica after a crash) is kept.
	DefaultHeldMaxAge = 48 * time.Hour
	// callTimeout bounds the calls made outside a worker's context
	// (settling, heartbeats, releasing).
	callTimeout = 10 * time.Second
	// pruneEvery is how often held entries left behind are looked for.
	pruneEvery = time.Minute
)

// Config configures a Queue.
type Config struct {
	Client    Client        // required
	Store     Store         // required
	Verifier  *sns.Verifier // required
	TopicARNs []string      // the allow-list; required

	// Visibility is the visibility timeout while a message is held; the
	// heartbeat extends it every third of it. A crashed replica's messages
	// come back after at most this long.
	Visibility time.Duration
	// RetryMin and RetryMax bound the backoff of messages that could not
	// be taken (a certificate download failed, the spool is full): RetryMin
	// doubled per receive. A refused message that may be a
	// misconfiguration (see Next) waits RetryMax.
	RetryMin, RetryMax time.Duration
	// HeldMaxAge: held entries enqueued longer ago are deleted (see
	// spool.Spool.DropHeld). Default DefaultHeldMaxAge.
	HeldMaxAge time.Duration

	Metrics *telemetry.Metrics // required
	Logger  *slog.Logger
	Now     func() time.Time
}

// Queue is the SQS intake as a mailproc queue. It is safe for concurrent
// use.
type Queue struct {
	cfg    Config
	topics map[string]bool
	log    *slog.Logger

	mu     sync.Mutex
	closed bool
	buf    []*lease          // received, not yet looked at
	held   map[string]*lease // by SNS MessageId: handed to a worker
	health health

	recv sync.Mutex // one Receive at a time fills buf
	bg   sync.WaitGroup
	stop chan struct{}
}

// health is the outcome of the last receive, for readiness.
type health struct {
	err error
	at  time.Time
}

// lease is one received message while the intake holds it: its heartbeat
// runs until end.
type lease struct {
	msg  Message
	end  context.CancelFunc
	done chan struct{}
}

// New validates cfg and starts the pruning of left-behind held entries.
// Close stops it.
func New(cfg Config) (*Queue, error) {
	if cfg.Client == nil || cfg.Store == nil || cfg.Verifier == nil || cfg.Metrics == nil {
		return nil, errors.New("sqsintake: Client, Store, Verifier and Metrics are required")
	}
	q := &Queue{cfg: cfg, topics: map[string]bool{}, held: map[string]*lease{}, stop: make(chan struct{})}
	for _, t := range cfg.TopicARNs {
		if t = strings.TrimSpace(t); t != "" {
			q.topics[t] = true
		}
	}
	if len(q.topics) == 0 {
		return nil, errors.New("sqsintake: no SNS topic ARNs allowed")
	}
	if q.cfg.Visibility <= 0 {
		q.cfg.Visibility = DefaultVisibility
	}
	if q.cfg.RetryMin <= 0 {
		q.cfg.RetryMin = DefaultRetryMin
	}
	if q.cfg.RetryMax < q.cfg.RetryMin {
		q.cfg.RetryMax = max(DefaultRetryMax, q.cfg.RetryMin)
	}
	if q.cfg.HeldMaxAge <= 0 {
		q.cfg.HeldMaxAge = DefaultHeldMaxAge
	}
	if q.cfg.Now == nil {
		q.cfg.Now = time.Now
	}
	q.log = cfg.Logger
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	q.bg.Add(1)
	go q.pruneLoop()
	return q, nil
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("sqsintake: closed")

// Next receives until a verified notification is there to be worked on and
// returns it as a spool entry (Attempts: the receives before this one). It
// returns ctx.Err() when ctx ends and ErrClosed after Close.
func (q *Queue) Next(ctx context.Context) (spool.Entry, error) {
	for {
		if err := ctx.Err(); err != nil {
			return spool.Entry{}, err
		}
		l, err := q.take(ctx)
		if err != nil {
			return spool.Entry{}, err
		}
		if l == nil {
			continue
		}
		if e, ok := q.accept(ctx, l); ok {
			return e, nil
		}
	}
}

// take returns the next received message, receiving when none is waiting;
// nil after a receive that brought nothing.
func (q *Queue) take(ctx context.Context) (*lease, error) {
	if l, err := q.pop(); l != nil || err != nil {
		return l, err
	}
	q.recv.Lock()
	defer q.recv.Unlock()
	if l, err := q.pop(); l != nil || err != nil { // filled while we waited
		return l, err
	}
	msgs, err := q.cfg.Client.Receive(ctx, q.cfg.Visibility)
	q.mu.Lock()
	if ctx.Err() == nil {
		q.health = health{err: err, at: q.cfg.Now()}
	}
	q.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		q.log.Warn("sqs receive failed", "err", err)
		select { // a breaker open or SQS down: do not spin
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		return nil, nil
	}
	var late []*lease
	q.mu.Lock()
	for _, m := range msgs {
		l := q.newLease(m)
		if q.closed {
			late = append(late, l) // received during Close: give it back
			continue
		}
		q.buf = append(q.buf, l)
	}
	q.mu.Unlock()
	for _, l := range late {
		q.end(l, 0)
	}
	return nil, nil
}

// pop takes the first buffered message.
func (q *Queue) pop() (*lease, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	if len(q.buf) == 0 {
		return nil, nil
	}
	l := q.buf[0]
	q.buf = q.buf[1:]
	return l, nil
}

// newLease starts the heartbeat of a received message.
func (q *Queue) newLease(m Message) *lease {
	ctx, cancel := context.WithCancel(context.Background())
	l := &lease{msg: m, end: cancel, done: make(chan struct{})}
	go q.heartbeat(ctx, l)
	return l
}

// heartbeat keeps m invisible while the intake holds it.
func (q *Queue) heartbeat(ctx context.Context, l *lease) {
	defer close(l.done)
	t := time.NewTicker(q.cfg.Visibility / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			err := q.cfg.Client.ChangeVisibility(cctx, l.msg.ReceiptHandle, q.cfg.Visibility)
			cancel()
			if err != nil && ctx.Err() == nil {
				q.log.Warn("sqs visibility extension failed", "err", err)
			}
		}
	}
}

// end stops l's heartbeat and makes its message visible again after
// d (d < 0: leaves the visibility as it is, for a deleted message). It
// waits for the heartbeat, so that no late extension undoes the change.
func (q *Queue) end(l *lease, d time.Duration) {
	l.end()
	<-l.done
	if d < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := q.cfg.Client.ChangeVisibility(ctx, l.msg.ReceiptHandle, d); err != nil {
		q.log.Warn("sqs change visibility failed; the message comes back when its visibility ends", "err", err)
	}
}

// delete deletes l's message. A failure is logged: the message comes back
// and is then recognised as finished.
func (q *Queue) delete(l *lease) {
	if l == nil { // given back by Close meanwhile
		return
	}
	q.end(l, -1)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := q.cfg.Client.Delete(ctx, l.msg.ReceiptHandle); err != nil {
		q.log.Warn("sqs delete failed; the message will come back as a duplicate", "err", err)
	}
}

// backoff is how long a message that could not be taken waits: RetryMin
// doubled per earlier receive, at most RetryMax.
func (q *Queue) backoff(receives int) time.Duration {
	d := q.cfg.RetryMin
	for i := 1; i < receives && d < q.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, q.cfg.RetryMax)
}

// Ready reports whether the last receive reached SQS (for /readyz; it
// makes no call).
func (q *Queue) Ready() (bool, string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.health.err != nil {
		return false, fmt.Sprintf("sqs unreachable: %.200s", q.health.err)
	}
	return true, ""
}

// Holds reports whether id is a message handed out and not yet settled.
func (q *Queue) Holds(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held[id] != nil
}

// release takes id's lease from the held ones.
func (q *Queue) release(id string) *lease {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.held[id]
	delete(q.held, id)
	return l
}

// MarkSent records a sent copy in the store.
func (q *Queue) MarkSent(id, key, sesMessageID string) error {
	return q.cfg.Store.MarkSent(id, key, sesMessageID)
}

// Retry makes id's message visible again at at: SQS redelivers it then
// (to any replica), counting a receive toward the redrive policy. The held
// entry is forgotten unless a copy was sent (its sent record is needed).
func (q *Queue) Retry(id string, at time.Time, reason string) error {
	l := q.release(id)
	if l == nil {
		return fmt.Errorf("sqsintake: retry %q: %w", id, spool.ErrNotFound)
	}
	if err := q.cfg.Store.Forget(id); err != nil {
		q.log.Warn("forgetting held entry", "sns_message_id", id, "err", err)
	}
	q.end(l, max(at.Sub(q.cfg.Now()), 0))
	return nil
}

// Release makes id's message visible again at once (shutdown).
func (q *Queue) Release(id string) {
	if l := q.release(id); l != nil {
		if err := q.cfg.Store.Forget(id); err != nil {
			q.log.Warn("forgetting held entry", "sns_message_id", id, "err", err)
		}
		q.end(l, 0)
	}
}

// Complete finishes id: the store's de-duplication marker first (durable),
// then the message is deleted.
func (q *Queue) Complete(id string) error {
	q.mu.Lock()
	l := q.held[id]
	q.mu.Unlock()
	if l == nil {
		return fmt.Errorf("sqsintake: complete %q: %w", id, spool.ErrNotFound)
	}
	if err := q.cfg.Store.Complete(id); err != nil {
		return err // the pool releases it: redelivered, its copies recorded as sent
	}
	q.delete(q.release(id))
	return nil
}

// DeadLetter stores id as a dead letter (in the store, where an operator
// lists and redrives them), then deletes the message.
func (q *Queue) DeadLetter(id, reason string) error {
	q.mu.Lock()
	l := q.held[id]
	q.mu.Unlock()
	if l == nil {
		return fmt.Errorf("sqsintake: dead-letter %q: %w", id, spool.ErrNotFound)
	}
	if err := q.cfg.Store.DeadLetter(id, reason); err != nil {
		return err
	}
	q.delete(q.release(id))
	return nil
}

// Close stops receiving and gives back every message the intake holds
// (visible at once): those buffered and those whose workers did not settle
// them. Call it after the pool has stopped.
func (q *Queue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	close(q.stop)
	var ls []*lease
	ls = append(ls, q.buf...)
	q.buf = nil
	var ids []string
	for id, l := range q.held {
		ls = append(ls, l)
		ids = append(ids, id)
		delete(q.held, id)
	}
	q.mu.Unlock()
	for _, id := range ids {
		if err := q.cfg.Store.Forget(id); err != nil {
			q.log.Warn("forgetting held entry", "sns_message_id", id, "err", err)
		}
	}
	for _, l := range ls {
		q.end(l, 0)
	}
	q.bg.Wait()
}

// pruneLoop deletes held entries left behind (see Config.HeldMaxAge).
func (q *Queue) pruneLoop() {
	defer q.bg.Done()
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
			n, err := q.cfg.Store.DropHeld(q.cfg.Now().Add(-q.cfg.HeldMaxAge), 1000, q.Holds)
			if err != nil && !errors.Is(err, spool.ErrClosed) {
				q.log.Warn("dropping held entries left behind", "err", err)
			} else if n > 0 {
				q.log.Info("dropped held entries left behind", "count", n)
			}
		}
	}
}

// kindOf labels an entry with its SES notification type ("" when the
// payload is not one: stored all the same, dead-lettered by a worker).
func kindOf(payload []byte) (kind, sesID string) {
	n, err := sesnotify.Parse(payload)
	if err != nil {
		return "", ""
	}
	return n.NotificationType, n.Mail.MessageID
}
