package mailproc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/reply"
	"github.com/mailrelay/mailrelay/mailproc/rewrite"
)

// Replies through the relay. With Config.Replies set, every forwarded copy
// gets a reply address as its Reply-To (rewrite.Params.ReplyAddress). A
// recipient shaped like a reply address (reply.Looks) is not looked up as
// an alias: routeReply checks it and, when the envelope sender (SES
// mail.source) is a destination of the alias it names, makes a copy from
// the alias to the original sender (group.replyFrom set), rewritten by
// rewrite.Reply. Otherwise the recipient is dropped: reply_invalid (forged
// or altered), reply_expired, reply_not_allowed (anyone but a destination,
// or an alias that is gone).

// routeReply resolves a recipient shaped like a reply address. It returns
// the copy to send, or the reason the recipient is dropped, or a transient
// error of the alias lookup.
func (p *Pool) routeReply(ctx context.Context, rcpt, source string) (group, failure.Reason, error) {
	a, err := p.cfg.Replies.Decode(rcpt, p.cfg.Now())
	switch {
	case errors.Is(err, reply.ErrExpired):
		return group{}, failure.ReasonReplyExpired, nil
	case err != nil:
		return group{}, failure.ReasonReplyInvalid, nil
	}
	r, err := p.cfg.Aliases.Resolve(ctx, a.Alias)
	switch {
	case errors.Is(err, aliases.ErrNotOurDomain), errors.Is(err, aliases.ErrUnknownAlias), errors.Is(err, aliases.ErrInvalidRecipient):
		return group{}, failure.ReasonReplyNotAllowed, nil
	case err != nil:
		return group{}, "", failure.Transient(failure.ReasonAliasLookup, err)
	}
	source = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(source), "<"), ">")
	allowed := false
	for _, d := range r.ForwardTo {
		if source != "" && strings.EqualFold(d, source) {
			allowed = true
			break
		}
	}
	switch {
	case !allowed:
		return group{}, failure.ReasonReplyNotAllowed, nil
	case !validAddress(r.Alias) || !validAddress(a.Sender) || !validAddress(source):
		return group{}, failure.ReasonInvalidRecipient, nil
	}
	return group{alias: r.Alias, forwardTo: []string{a.Sender}, replyFrom: source}, "", nil
}

// rewriteCopy writes into buf the copy of the mail (split header h) that g sends: a reply, or a
// forward (with a reply address when replies are on, and the subject tag
// of tags).
func (p *Pool) rewriteCopy(buf *bytes.Buffer, h *rewrite.Header, g group, tags []failure.Reason, log *slog.Logger) error {
	if g.replyFrom != "" {
		_, err := h.Reply(buf, rewrite.ReplyParams{Alias: g.alias, To: g.forwardTo[0], Destination: g.replyFrom})
		return err
	}
	params := rewrite.Params{
		Alias:         g.alias,
		DisplaySuffix: p.cfg.Policy.DisplaySuffix,
		LoopMarker:    loopMarker(g.alias),
		Annotate:      true,
		SubjectTag:    p.subjectTag(tags),
	}
	if c := p.cfg.Replies; c != nil {
		now := p.cfg.Now()
		params.ReplyAddress = func(sender string) (string, bool) {
			addr, err := c.Encode(g.alias, sender, now)
			if err != nil {
				// The copy keeps the original sender in Reply-To: a reply
				// would then come from the destination's own address.
				log.Info("no reply address for this sender; Reply-To is the original sender", "alias", g.alias, "err", err)
				return "", false
			}
			return addr, true
		}
	}
	_, err := h.Rewrite(buf, params)
	return err
}

// forwardReason is the reason a forwarded mail is counted with: reply when
// every copy is a reply, the first tag when tagged, else ok.
func forwardReason(groups []group, tags []failure.Reason) failure.Reason {
	replies := 0
	for _, g := range groups {
		if g.replyFrom != "" {
			replies++
		}
	}
	switch {
	case replies > 0 && replies == len(groups):
		return failure.ReasonReply
	case len(tags) > 0:
		return tags[0]
	}
	return failure.ReasonOK
}
