package mailproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"sync"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/reply"
	"github.com/mailrelay/mailrelay/mailproc/rewrite"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

// MaxDestinations is the most envelope recipients SES accepts per send.
const MaxDestinations = 50

// result is the outcome of one attempt.
type result struct {
	outcome string // telemetry.Msg* when err is nil
	reason  failure.Reason
	sent    int              // copies sent in this attempt
	dropped []failure.Reason // reasons of recipients dropped (counted once the mail is finished)
	sesID   string           // SES message id of the received mail, for logs
	err     error
}

// group is one copy to send: an alias and where it forwards; for a reply
// (replies.go), from the alias to the original sender.
type group struct {
	alias     string
	forwardTo []string
	replyFrom string        // the destination that wrote the reply; "" for a forward
	state     aliases.State // the alias's state ("" for enabled)
}

// key identifies the copy in the spool's sent-record.
func (g group) key() string {
	k := g.alias + ">" + strings.Join(g.forwardTo, ",")
	if g.replyFrom != "" {
		k = "reply:" + k
	}
	return k
}

var errUnavailable = errors.New("a dependency's circuit breaker is open")

func (p *Pool) process(ctx context.Context, e spool.Entry, log *slog.Logger) result {
	if res, ok := p.recordFeedback(ctx, e.Payload); ok {
		return res
	}
	n, err := sesnotify.ParseBrief(e.Payload)
	if err != nil {
		return result{err: failure.Permanent(failure.ReasonMalformedNotification, err)}
	}
	res := result{sesID: n.Mail.MessageID}
	switch n.NotificationType {
	case sesnotify.TypeReceived:
		if n.Receipt == nil {
			res.err = failure.Permanentf(failure.ReasonMalformedNotification, "Received notification without receipt")
			return res
		}
	case sesnotify.TypeBounce, sesnotify.TypeComplaint:
		// Kept for the feedback handler to come: nothing is lost, an
		// operator can list and redrive them.
		reason := failure.ReasonFeedbackBounce
		if n.NotificationType == sesnotify.TypeComplaint {
			reason = failure.ReasonFeedbackComplaint
		}
		res.err = failure.Permanentf(reason, "%s notification stored for feedback handling", n.NotificationType)
		return res
	default:
		res.err = failure.Permanentf(failure.ReasonUnknownNotification, "notificationType %q", n.NotificationType)
		return res
	}

	reason, tags := p.verdict(n)
	if reason != "" {
		p.cleanup(ctx, n, log)
		res.outcome, res.reason = telemetry.MsgDropped, reason
		return res
	}
	if p.cfg.Policy.HoldUnverified {
		if check := p.unverified(n); check != "" {
			// Kept (with its S3 object) for an operator, not lost.
			res.err = failure.Permanentf(failure.ReasonUnverified, "the %s verdict is %s (a reconciled mail?) and the policy holds unverified mail", check, sesnotify.StatusProcessingFail)
			return res
		}
	}
	if nullSource(n) {
		p.cleanup(ctx, n, log)
		res.outcome, res.reason = telemetry.MsgDropped, failure.ReasonEmptySender
		return res
	}

	groups, dropped, err := p.route(ctx, n.Receipt.Recipients, n.Mail.Source)
	if err != nil {
		res.err = err
		return res
	}
	res.dropped = dropped
	if len(groups) == 0 {
		if p.cfg.Policy.DeadLetterUnknown && !allInvalid(dropped) {
			res.dropped = nil
			res.err = failure.Permanentf(failure.ReasonUnknownAlias, "no known alias among recipients %q", n.Receipt.Recipients)
			return res
		}
		p.cleanup(ctx, n, log)
		// Each dropped recipient is counted (no message-level count on top).
		if len(res.dropped) == 0 {
			res.dropped = []failure.Reason{failure.ReasonNoRecipient}
		}
		return res
	}

	// Every copy went out in an earlier attempt: a crash or shutdown came
	// between the last sent-record and Complete, perhaps after the S3
	// object was deleted. Finish without downloading it again (a missing
	// object would otherwise dead-letter mail that was forwarded).
	if allSent(groups, e.Sent) {
		p.cleanup(ctx, n, log)
		res.outcome, res.reason = telemetry.MsgForwarded, forwardReason(groups, tags)
		return res
	}

	// Do not download a mail that cannot be sent now, nor ask S3 while
	// its breaker is open.
	if !p.available() {
		res.err = failure.Transient(failure.ReasonBreakerOpen, errUnavailable)
		return res
	}

	// Feedback: no mail to a disabled alias or a paused destination.
	groups, fbDropped, err := p.checkFeedback(ctx, n, groups, e.Sent)
	if err != nil {
		res.err = err
		return res
	}
	if res.dropped = append(res.dropped, fbDropped...); len(groups) == 0 {
		p.cleanup(ctx, n, log)
		return res
	}

	// The pace: tokens first, then memory and the download.
	if err := p.takeTokens(ctx, groups, e.Sent); err != nil {
		res.err = err
		return res
	}

	reserve := min(2*p.cfg.Policy.MaxMessageBytes, p.budget.limit) // raw mail + one rewritten copy; acquire clamps to the limit, so must we
	if err := p.budget.acquire(ctx, reserve); err != nil {
		res.err = failure.Transient(failure.ReasonShutdown, err)
		return res
	}
	defer func() { p.budget.release(reserve) }()

	raw, err := p.fetch(ctx, n)
	if err != nil {
		res.err = err
		return res
	}
	if int64(len(raw)) > p.cfg.Policy.MaxMessageBytes {
		res.err = failure.Permanentf(failure.ReasonMessageTooLarge, "mail is %d bytes, limit %d", len(raw), p.cfg.Policy.MaxMessageBytes)
		return res
	}
	// The header block is split once, for the loop checks and every copy.
	hdr, err := rewrite.Parse(raw)
	if err != nil {
		res.err = err
		return res
	}
	defer hdr.Release()
	// Mail that would loop is not forwarded (see loopReason).
	if reason := loopReason(hdr.Facts(), groups); reason != "" {
		p.cleanup(ctx, n, log)
		res.outcome, res.reason = telemetry.MsgDropped, reason
		return res
	}
	// Aliases that block promotional mail (aliasstate.go).
	if groups, res.dropped = p.blockPromotional(raw, groups, res.dropped); len(groups) == 0 {
		p.cleanup(ctx, n, log)
		return res
	}
	// Give back what this mail does not need.
	if need := 2*int64(len(raw)) + 64<<10; need < reserve {
		p.budget.release(reserve - need)
		reserve = need
	}

	// Room for the mail and its rewritten header (bufpool.go): the body is
	// copied once, into a buffer that does not grow.
	buf := getBuf(len(raw) + 16<<10)
	defer putBuf(buf)
	for _, g := range groups {
		key := g.key()
		if _, done := e.Sent[key]; done {
			continue // sent by an earlier attempt
		}
		buf.Reset()
		if err := p.rewriteCopy(buf, hdr, g, tags, log); err != nil {
			res.err = err
			return res
		}
		id, err := p.send(ctx, g.alias, g.forwardTo, buf.Bytes())
		if err != nil {
			res.err = fmt.Errorf("send as %s: %w", g.alias, err)
			return res
		}
		res.sent++
		p.aliasEvent(g.alias, aliases.EventForwarded)
		p.countSent(ctx, g, log)
		if log.Enabled(context.Background(), slog.LevelInfo) { // log.Info's own test, before its arguments are boxed
			log.Info("sent", "alias", g.alias, "destinations", len(g.forwardTo), "ses_message_id", n.Mail.MessageID, "ses_sent_id", id)
		}
		if err := p.cfg.Queue.MarkSent(e.ID, key, id); err != nil {
			// The copy went out but the record did not stick: a retry may
			// send it again. Say so loudly; this is the duplicate window.
			log.Error("recording a sent copy failed", "err", err, "key", key)
			res.err = failure.Transient(failure.ReasonSpoolWrite, err)
			return res
		}
	}
	p.cleanup(ctx, n, log)
	res.outcome, res.reason = telemetry.MsgForwarded, forwardReason(groups, tags)
	return res
}

// allSent reports whether every group's copy is recorded in sent.
func allSent(groups []group, sent map[string]string) bool {
	if len(sent) == 0 { // the first attempt: no key to make
		return len(groups) == 0
	}
	for _, g := range groups {
		if _, ok := sent[g.key()]; !ok {
			return false
		}
	}
	return true
}

// nullSource reports whether the notification says the envelope sender was
// empty (MAIL FROM:<>, bounces and auto-replies): mail.source "<>", or ""
// in a notification that lists the mail's headers. SES always names the
// envelope sender of a mail it lists the headers of, so there "" can only
// be the null reverse-path; notifications built after the fact (reconcile,
// tests) know neither and list no headers, and for them the Return-Path
// SES wrote on top of the stored mail decides after the fetch (loopReason).
func nullSource(n *sesnotify.Notification) bool {
	src := strings.TrimSpace(n.Mail.Source)
	return src == "<>" || src == "" && n.Mail.HeadersListed
}

// loopMarker is the value of the loop marker (rewrite.LoopHeader) on copies
// sent as alias: the alias's domain, lower-cased.
func loopMarker(alias string) string {
	return strings.ToLower(alias[strings.LastIndexByte(alias, '@')+1:])
}

// loopReason returns why the mail whose header block says f must not be
// forwarded as ordinary mail, or "":
//
//   - failure.ReasonLoop: it carries the loop marker one of the copies would
//     get (it went through this relay before: a destination forwards back
//     to the alias);
//   - failure.ReasonEmptySender: its Return-Path, where SES records the
//     envelope sender, is "<>";
//   - failure.ReasonDeliveryReport: it is a delivery status notification
//     (a bounce, whatever its envelope);
//   - failure.ReasonAutoSubmitted: Auto-Submitted says it is automatic.
//
// Forwarding any of these can loop: the copy of a bounce bounces again, an
// auto-reply answers an auto-reply. (A header block rewrite would refuse
// fails rewrite.Parse before: permanent malformed_mail.)
func loopReason(f rewrite.Facts, groups []group) failure.Reason {
	for _, g := range groups {
		if f.HasLoopMarker(loopMarker(g.alias)) {
			return failure.ReasonLoop
		}
	}
	switch {
	case f.NullSender:
		return failure.ReasonEmptySender
	case f.DeliveryReport:
		return failure.ReasonDeliveryReport
	case f.IsAutoSubmitted():
		return failure.ReasonAutoSubmitted
	}
	return ""
}

// allInvalid reports whether every dropped recipient was invalid or a
// refused reply (and there was one): such mail can never be forwarded, so it
// is dropped even under Policy.DeadLetterUnknown, whose dead letters wait
// for an alias.
func allInvalid(dropped []failure.Reason) bool {
	for _, r := range dropped {
		if !finalDrop(r) {
			return false
		}
	}
	return len(dropped) > 0
}

// validAddress reports whether a is a plain ASCII addr-spec SES can send
// from or to: it parses as an address, with no display name, brackets,
// quotes, blanks or 8-bit bytes. Aliases and destinations are checked
// before sending, whatever the Resolver: SES answers a bad one with
// InvalidParameterValue or MessageRejected, for the whole copy.
func validAddress(a string) bool {
	if a == "" || len(a) > 320 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c > '~' || strings.IndexByte(`"()<>[]:;\,`, c) >= 0 {
			return false
		}
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at > 64 || at == len(a)-1 {
		return false
	}
	addr, err := mail.ParseAddress(a)
	return err == nil && addr.Name == "" && addr.Address == a
}

// addrCache remembers validAddress's answers: every mail to an alias
// checks the alias and each of its destinations, the same few addresses
// again and again. At most maxCachedAddrs are kept (then it starts over).
type addrCache struct {
	mu sync.RWMutex
	m  map[string]bool
}

const maxCachedAddrs = 4096

func (c *addrCache) valid(a string) bool {
	c.mu.RLock()
	ok, found := c.m[a]
	c.mu.RUnlock()
	if found {
		return ok
	}
	ok = validAddress(a)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedAddrs {
		c.m = make(map[string]bool)
	}
	c.m[a] = ok
	c.mu.Unlock()
	return ok
}

// route resolves each recipient and groups them into copies, one per alias;
// a reply address (with replies on) is resolved by routeReply, source being
// the envelope sender.
func (p *Pool) route(ctx context.Context, recipients []string, source string) ([]group, []failure.Reason, error) {
	var groups []group
	var dropped []failure.Reason
	seen := map[string]bool{}
	for _, rcpt := range recipients {
		if p.cfg.Replies != nil && reply.Looks(rcpt) {
			g, reason, err := p.routeReply(ctx, rcpt, source)
			switch {
			case err != nil:
				return nil, nil, err
			case reason != "":
				dropped = append(dropped, reason)
			case !seen[g.key()]:
				seen[g.key()] = true
				groups = append(groups, g)
			}
			continue
		}
		r, err := p.cfg.Aliases.Resolve(ctx, rcpt)
		switch {
		case errors.Is(err, aliases.ErrNotOurDomain):
			dropped = append(dropped, failure.ReasonNotOurDomain)
			continue
		case errors.Is(err, aliases.ErrUnknownAlias):
			dropped = append(dropped, failure.ReasonUnknownAlias)
			continue
		case errors.Is(err, aliases.ErrInvalidRecipient):
			dropped = append(dropped, failure.ReasonInvalidRecipient)
			continue
		case err != nil:
			return nil, nil, failure.Transient(failure.ReasonAliasLookup, err)
		}
		// Whatever the Resolver: an alias or destination SES would refuse
		// is dropped now, not sent and retried for a day.
		valid := r.ForwardTo
		if slices.ContainsFunc(valid, func(a string) bool { return !p.addrs.valid(a) }) {
			valid = slices.DeleteFunc(slices.Clone(valid), func(a string) bool { return !p.addrs.valid(a) })
		}
		if !p.addrs.valid(r.Alias) || len(valid) == 0 {
			dropped = append(dropped, failure.ReasonInvalidRecipient)
			continue
		}
		r.ForwardTo = valid
		if reason := p.aliasStateDrop(r); reason != "" { // aliasstate.go
			dropped = append(dropped, reason)
			continue
		}
		if seen[r.Alias] {
			continue
		}
		seen[r.Alias] = true
		fw := slices.Clone(r.ForwardTo)
		slices.Sort(fw)
		// SES takes at most 50 destinations per message: larger alias
		// lists go out as several copies.
		// (slices.Chunk's loop, without its closure's allocation.)
		fw = slices.Compact(fw)
		for i := 0; i < len(fw); i += MaxDestinations {
			end := min(i+MaxDestinations, len(fw))
			groups = append(groups, group{alias: r.Alias, forwardTo: fw[i:end:end], state: r.State})
		}
	}
	return groups, dropped, nil
}

// fetch returns the raw mail: inline content, or the S3 object.
func (p *Pool) fetch(ctx context.Context, n *sesnotify.Notification) ([]byte, error) {
	if data, ok, err := n.InlineContent(); err != nil {
		return nil, failure.Permanent(failure.ReasonMalformedNotification, err)
	} else if ok {
		return data, nil
	}
	a := n.Receipt.Action
	if strings.EqualFold(a.Type, "S3") && a.BucketName != "" && a.ObjectKey != "" {
		raw, err := p.cfg.Objects.Get(ctx, a.BucketName, a.ObjectKey)
		if err != nil {
			return nil, fmt.Errorf("fetch s3://%s/%s: %w", a.BucketName, a.ObjectKey, err)
		}
		return raw, nil
	}
	return nil, failure.Permanentf(failure.ReasonNoContent, "notification has neither content nor an S3 action (action %q)", a.Type)
}

// cleanup deletes the S3 object of a finished mail. A failure is logged and
// left to the bucket's lifecycle expiry: the mail itself is done.
func (p *Pool) cleanup(ctx context.Context, n *sesnotify.Notification, log *slog.Logger) {
	if n.Receipt == nil {
		return
	}
	a := n.Receipt.Action
	if !p.cfg.Policy.DeleteObjects || !strings.EqualFold(a.Type, "S3") || a.BucketName == "" || a.ObjectKey == "" {
		return
	}
	if err := p.cfg.Objects.Delete(ctx, a.BucketName, a.ObjectKey); err != nil {
		log.Warn("deleting the S3 object failed; lifecycle expiry will remove it", "bucket", a.BucketName, "key", a.ObjectKey, "err", err)
	}
}
