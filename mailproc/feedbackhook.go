package mailproc

import (
	"context"
	"log/slog"
	"strings"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// Feedback handles SES feedback and keeps mail away from where it hurts the
// account's reputation (implemented by *feedback.Handler).
type Feedback interface {
	// Record applies a Bounce, Complaint or Delivery notification.
	Record(ctx context.Context, payload []byte) error
	// Check returns why a copy from alias to destinations may not go, or "".
	Check(ctx context.Context, alias string, destinations []string, spamPass bool) (failure.Reason, error)
	// Sent counts a copy sent to destinations.
	Sent(ctx context.Context, destinations []string) error
}

// recordFeedback handles a feedback notification; ok is false for any
// other payload (or without Config.Feedback: then feedback is
// dead-lettered as before, to be redriven once it is handled).
func (p *Pool) recordFeedback(ctx context.Context, payload []byte) (result, bool) {
	if p.cfg.Feedback == nil || !feedback.IsFeedback(payload) {
		return result{}, false
	}
	// Finished without a mailrelay_messages_total count: it is no mail.
	return result{err: p.cfg.Feedback.Record(ctx, payload)}, true
}

// checkFeedback filters the copies still to send: those of a disabled or
// complained-about alias are dropped (their reasons added to dropped); if
// any other is for a paused destination or one over its daily cap, the
// whole mail is held (a permanent error with that reason: dead-lettered,
// to be redriven), before anything is downloaded or sent.
func (p *Pool) checkFeedback(ctx context.Context, n *sesnotify.Notification, groups []group, sent map[string]string) ([]group, []failure.Reason, error) {
	if p.cfg.Feedback == nil {
		return groups, nil, nil
	}
	spamPass := strings.EqualFold(n.Receipt.SpamVerdict.Status, sesnotify.StatusPass)
	var keep []group
	var dropped []failure.Reason
	for _, g := range groups {
		if _, done := sent[g.key()]; done {
			keep = append(keep, g)
			continue
		}
		reason, err := p.cfg.Feedback.Check(ctx, g.alias, g.forwardTo, spamPass)
		switch {
		case err != nil:
			return nil, nil, failure.Transient(failure.ReasonFeedbackState, err)
		case reason == failure.ReasonAliasDisabled || reason == failure.ReasonAliasComplained:
			dropped = append(dropped, reason)
		case reason != "":
			return nil, nil, failure.Permanentf(reason, "copy as %s to %d destination(s) held", g.alias, len(g.forwardTo))
		default:
			keep = append(keep, g)
		}
	}
	return keep, dropped, nil
}

// countSent tells the feedback state a copy went out; a failure is logged
// (the copy is sent: the daily count is a bound, not a record).
func (p *Pool) countSent(ctx context.Context, g group, log *slog.Logger) {
	if p.cfg.Feedback == nil {
		return
	}
	if err := p.cfg.Feedback.Sent(ctx, g.forwardTo); err != nil {
		log.Warn("counting a sent copy failed", "err", err, "alias", g.alias)
	}
}
