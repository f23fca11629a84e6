package mailproc

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// AliasEvents receives what happened to mail for each alias, for the
// per-alias counters (aliasdb.Counter, which batches them). AliasEvent must
// not block: it is called on the send path.
type AliasEvents interface {
	AliasEvent(alias string, ev aliases.Event)
}

// aliasEvent counts ev for alias when the pool has somewhere to count it.
func (p *Pool) aliasEvent(alias string, ev aliases.Event) {
	if p.cfg.AliasEvents != nil {
		p.cfg.AliasEvents.AliasEvent(alias, ev)
	}
}

// aliasStateDrop returns why mail for route must not be forwarded before
// even looking at the mail (a disabled alias: alias_disabled), or "".
func (p *Pool) aliasStateDrop(r aliases.Route) failure.Reason {
	if r.State == aliases.StateDisabled {
		p.aliasEvent(r.Alias, aliases.EventBlocked)
		return failure.ReasonAliasDisabled
	}
	return ""
}

// blockPromotional removes the copies for aliases in state
// block_promotional when raw is promotional mail (see isPromotional),
// adding a promotional_blocked drop for each alias removed.
func (p *Pool) blockPromotional(raw []byte, groups []group, dropped []failure.Reason) ([]group, []failure.Reason) {
	if !hasState(groups, aliases.StateBlockPromotional) || !isPromotional(raw) {
		return groups, dropped
	}
	kept := groups[:0:0]
	counted := map[string]bool{}
	for _, g := range groups {
		if g.state != aliases.StateBlockPromotional {
			kept = append(kept, g)
			continue
		}
		if !counted[g.alias] { // one drop per alias, not per chunk of destinations
			counted[g.alias] = true
			dropped = append(dropped, failure.ReasonPromotionalBlocked)
			p.aliasEvent(g.alias, aliases.EventBlocked)
		}
	}
	return kept, dropped
}

func hasState(groups []group, s aliases.State) bool {
	for _, g := range groups {
		if g.state == s {
			return true
		}
	}
	return false
}

// isPromotional reports whether the header block of raw marks bulk mail:
// a List-Id or List-Unsubscribe field (RFC 2919, RFC 2369: mailing lists
// and newsletters), or Precedence bulk, list or junk. A header block
// net/textproto cannot read counts as not promotional: the mail is
// forwarded rather than lost.
func isPromotional(raw []byte) bool {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if lf := bytes.Index(raw, []byte("\n\n")); end < 0 || (lf >= 0 && lf < end) {
		end = lf
	}
	if end >= 0 {
		raw = raw[:end+2]
	}
	h, err := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(raw), strings.NewReader("\r\n")))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return false
	}
	if h.Get("List-Id") != "" || h.Get("List-Unsubscribe") != "" {
		return true
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Precedence"))) {
	case "bulk", "list", "junk":
		return true
	}
	return false
}

// finalDrop reports whether a recipient dropped for reason can never be
// forwarded as it is (an invalid address, a disabled alias): such mail is
// dropped even under Policy.DeadLetterUnknown, whose dead letters wait for
// an alias to be added.
func finalDrop(reason failure.Reason) bool {
	switch reason {
	case failure.ReasonInvalidRecipient, failure.ReasonAliasDisabled,
		failure.ReasonReplyInvalid, failure.ReasonReplyExpired, failure.ReasonReplyNotAllowed:
		return true
	}
	return false
}
