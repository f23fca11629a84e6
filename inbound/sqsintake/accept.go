package sqsintake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// Outcome label values of mailrelay_sqs_messages_total.
const (
	OutcomeAccepted  = "accepted"  // handed to a worker (reason new or resumed)
	OutcomeDuplicate = "duplicate" // finished or dead-lettered already: deleted
	OutcomeDeferred  = "deferred"  // not taken now, visible again after a backoff
	OutcomeRejected  = "rejected"  // refused for good (deleted, or left for the dead-letter queue)
	OutcomeConfirmed = "confirmed" // a SubscriptionConfirmation, confirmed and deleted
	OutcomeIgnored   = "ignored"   // an UnsubscribeConfirmation, logged and deleted
)

// What a message that cannot be taken becomes.
type fate int

const (
	// defer: transient (a certificate download failed, the spool is full,
	// the MessageId is being worked on): visible again after the backoff.
	fateDefer fate = iota
	// park: refused, but possibly a misconfiguration of ours (raw message
	// delivery on, the topic missing from the allow-list, the certificate
	// URL rule): visible again after RetryMax, so that the redrive policy
	// moves it to the dead-letter queue, where it can be inspected and
	// moved back once fixed. Nothing authentic is deleted unread.
	fatePark
	// drop: forged or replayed (the signature does not verify, the signed
	// Timestamp is too old at the time SQS received it), or a confirmation
	// whose SubscribeURL fails the rule: deleted and counted.
	fateDrop
)

// refusals maps an error to what becomes of the message and the reason
// label, in the spirit of inbound's status table (403 there is drop or park
// here, 400 park, 503 defer). Anything not listed is deferred.
var refusals = []struct {
	err    error
	fate   fate
	reason string
}{
	{sns.ErrUnknownType, fatePark, "unknown_type"},
	{sns.ErrMalformed, fatePark, "malformed"},
	{errTopicNotAllowed, fatePark, "topic_not_allowed"},
	{sns.ErrCertURL, fatePark, "cert_url_not_allowed"},
	{sns.ErrSignature, fateDrop, "bad_signature"},
	{sns.ErrTimestamp, fateDrop, "stale_timestamp"},
	{sns.ErrSubscribeURL, fateDrop, "subscribe_url_not_allowed"},
	{sns.ErrCertLimited, fateDefer, "cert_fetch_limited"},
	{sns.ErrCertFetch, fateDefer, "cert_fetch_failed"},
	{sns.ErrConfirm, fateDefer, "confirm_failed"},
	{spool.ErrInvalidID, fatePark, "invalid_message_id"},
	{spool.ErrFull, fateDefer, "spool_full"},
	{errBusy, fateDefer, "busy"},
}

var (
	errTopicNotAllowed = errors.New("sqsintake: topic not allowed")
	// errBusy: the MessageId is being worked on (a second delivery of the
	// same notification) or is pending in the spool from another intake.
	errBusy = errors.New("sqsintake: message id in progress")
)

// refusal is the fate and reason of err.
func refusal(err error) (fate, string) {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r.fate, r.reason
		}
	}
	return fateDefer, "store_failed"
}

// accept decides one received message. It returns the entry to work on,
// or settles the message itself (deletes it or sets its visibility) and
// returns false.
func (q *Queue) accept(ctx context.Context, l *lease) (spool.Entry, bool) {
	m, err := sns.Parse(l.msg.Body)
	log := q.log
	if m != nil {
		log = log.With("sns_message_id", clip(m.MessageId), "type", m.Type, "topic", clip(m.TopicArn))
	}
	if err == nil {
		var e spool.Entry
		var outcome, reason string
		if e, outcome, reason, err = q.decide(ctx, m, l); err == nil {
			q.count(outcome, reason)
			switch outcome {
			case OutcomeAccepted:
				log.Debug("sqs message taken", "reason", reason, "receives", l.msg.ReceiveCount)
				return e, true
			case OutcomeIgnored:
				log.Info("sqs message ignored", "reason", reason)
			default:
				log.Info("sqs message finished", "outcome", outcome, "reason", reason)
			}
			q.delete(l)
			return spool.Entry{}, false
		}
	}
	f, reason := refusal(err)
	switch f {
	case fateDrop:
		q.count(OutcomeRejected, reason)
		log.Warn("sqs message refused and deleted", "reason", reason, "err", err)
		q.delete(l)
	case fatePark:
		q.count(OutcomeRejected, reason)
		log.Error("sqs message refused; left for the queue's dead-letter queue", "reason", reason, "err", err,
			"receives", l.msg.ReceiveCount, "again_in", q.cfg.RetryMax)
		q.end(l, q.cfg.RetryMax)
	default:
		d := q.backoff(l.msg.ReceiveCount)
		q.count(OutcomeDeferred, reason)
		log.Log(ctx, levelOf(reason), "sqs message deferred", "reason", reason, "err", err, "again_in", d)
		q.end(l, d)
	}
	return spool.Entry{}, false
}

func levelOf(reason string) slog.Level {
	if reason == "busy" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// decide verifies m in inbound's order (topic, certificate URL, signature
// and Timestamp) and acts on it: a notification is stored as a held entry
// and returned (OutcomeAccepted), a finished one is OutcomeDuplicate, a
// confirmation is confirmed. An error refuses the message (see refusals).
func (q *Queue) decide(ctx context.Context, m *sns.Message, l *lease) (spool.Entry, string, string, error) {
	v := q.cfg.Verifier
	if !q.topics[m.TopicArn] {
		return spool.Entry{}, "", "", fmt.Errorf("%w: %.200q", errTopicNotAllowed, m.TopicArn)
	}
	if !v.CertURLAllowed(m.SigningCertURL) {
		return spool.Entry{}, "", "", fmt.Errorf("%w: %.200q", sns.ErrCertURL, m.SigningCertURL)
	}
	if err := v.VerifyAt(ctx, m, l.msg.SentAt); err != nil {
		return spool.Entry{}, "", "", err
	}
	switch m.Type {
	case sns.TypeSubscriptionConfirmation:
		if err := v.Confirm(ctx, m); err != nil {
			return spool.Entry{}, "", "", err
		}
		return spool.Entry{}, OutcomeConfirmed, "subscription_confirmed", nil
	case sns.TypeUnsubscribeConfirmation:
		return spool.Entry{}, OutcomeIgnored, "unsubscribe_confirmation", nil
	}
	return q.hold(ctx, m, l)
}

// hold stores the notification as a held entry, or finds the one stored
// by an earlier receive (with its sent record), and takes it.
func (q *Queue) hold(ctx context.Context, m *sns.Message, l *lease) (spool.Entry, string, string, error) {
	payload := []byte(m.Message)
	kind, _ := kindOf(payload)
	e := spool.Entry{
		ID:          m.MessageId,
		Kind:        kind,
		TopicARN:    m.TopicArn,
		Payload:     payload,
		EnqueuedAt:  l.msg.SentAt.UTC(),
		NextAttempt: spool.HeldDue,
	}
	if e.EnqueuedAt.IsZero() {
		e.EnqueuedAt = q.cfg.Now().UTC()
	}
	// Reserved before the store is asked, so that two receives of the same
	// notification (SQS delivers at least once) never both take it.
	q.mu.Lock()
	if q.held[e.ID] != nil || q.closed {
		q.mu.Unlock()
		return spool.Entry{}, "", "", errBusy
	}
	q.held[e.ID] = l
	q.mu.Unlock()
	outcome, reason, err := q.store(ctx, &e)
	if err != nil || outcome != OutcomeAccepted {
		q.mu.Lock()
		delete(q.held, e.ID)
		q.mu.Unlock()
		return spool.Entry{}, outcome, reason, err
	}
	e.Attempts = max(l.msg.ReceiveCount-1, 0)
	return e, outcome, reason, nil
}

// store puts e in the store as a held entry; when it is there already,
// it is either finished (a duplicate), held (resumed, its stored fields
// replace e's), or the spool's own (busy).
func (q *Queue) store(ctx context.Context, e *spool.Entry) (outcome, reason string, err error) {
	dup, err := q.cfg.Store.Put(ctx, *e)
	if err != nil {
		return "", "", err
	}
	if !dup {
		return OutcomeAccepted, "new", nil
	}
	stored, err := q.cfg.Store.Pending(e.ID)
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return OutcomeDuplicate, "finished", nil
	case err != nil:
		return "", "", err
	case !spool.Held(stored):
		return "", "", fmt.Errorf("%w: pending in the spool", errBusy)
	}
	*e = stored
	return OutcomeAccepted, "resumed", nil
}

func (q *Queue) count(outcome, reason string) {
	q.cfg.Metrics.SQSMessages.WithLabelValues(outcome, reason).Inc()
}

// clip bounds attacker-controlled strings in logs.
func clip(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
