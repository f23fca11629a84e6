package mailproc

import (
	"fmt"
	"strings"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// Action is what the policy does with mail a receipt verdict flags.
type Action string

// Actions. ActionDefault leaves the choice to the check's default (see
// Policy).
const (
	ActionDefault Action = ""
	ActionForward Action = "forward" // forwarded as if the check had passed
	ActionTag     Action = "tag"     // forwarded with Policy.SubjectTag in front of the Subject
	ActionDrop    Action = "drop"    // not forwarded, counted as dropped with the check's reason
)

// DefaultSubjectTag is put in front of the Subject of tagged mail when
// Policy.SubjectTag is empty.
const DefaultSubjectTag = "[SPAM]"

// ParseAction parses an action name; "" is ActionDefault.
func ParseAction(s string) (Action, error) {
	switch a := Action(strings.ToLower(strings.TrimSpace(s))); a {
	case ActionDefault, ActionForward, ActionTag, ActionDrop:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q: want forward, tag or drop", s)
}

// check is one receipt verdict the policy acts on.
type check struct {
	reason failure.Reason
	name   string // for the unverified dead letter's text
	action Action
	// status is the verdict's status (FAIL, PROCESSING_FAILED, ...); fail
	// is whether this verdict flags the mail.
	status string
	fail   bool
}

// checks returns the policy's checks in the order they are applied: the
// first that drops decides. (An array: nothing allocated per mail.)
func (p *Pool) checks(r *sesnotify.Receipt) [6]check {
	pol := p.cfg.Policy
	or := func(a, def Action) Action {
		if a != ActionDefault {
			return a
		}
		return def
	}
	drop := func(on bool) Action {
		if on {
			return ActionDrop
		}
		return ActionForward
	}
	failed := func(v sesnotify.Verdict) bool { return strings.EqualFold(v.Status, "FAIL") }
	dmarcFail := failed(r.DMARCVerdict)
	return [...]check{
		{failure.ReasonVirus, "virus", or(pol.VirusAction, drop(pol.DropVirus)), r.VirusVerdict.Status, failed(r.VirusVerdict)},
		{failure.ReasonSpam, "spam", or(pol.SpamAction, drop(pol.DropSpam)), r.SpamVerdict.Status, failed(r.SpamVerdict)},
		{failure.ReasonDMARCReject, "DMARC", or(pol.DMARCRejectAction, drop(pol.DropDMARCReject)), r.DMARCVerdict.Status, dmarcFail && strings.EqualFold(r.DMARCPolicy, "reject")},
		{failure.ReasonDMARCQuarantine, "DMARC", or(pol.DMARCQuarantineAction, ActionTag), r.DMARCVerdict.Status, dmarcFail && strings.EqualFold(r.DMARCPolicy, "quarantine")},
		{failure.ReasonSPF, "SPF", or(pol.SPFAction, ActionForward), r.SPFVerdict.Status, failed(r.SPFVerdict)},
		{failure.ReasonDKIM, "DKIM", or(pol.DKIMAction, ActionForward), r.DKIMVerdict.Status, failed(r.DKIMVerdict)},
	}
}

// verdict applies the policy to the receipt's verdicts: the reason of the
// first check that drops the mail, else the reasons of the checks that tag
// it (in order; nil when none).
func (p *Pool) verdict(n *sesnotify.Notification) (drop failure.Reason, tags []failure.Reason) {
	for _, c := range p.checks(n.Receipt) {
		if !c.fail {
			continue
		}
		switch c.action {
		case ActionDrop:
			return c.reason, nil
		case ActionTag:
			tags = append(tags, c.reason)
		}
	}
	return "", tags
}

// subjectTag is the tag for mail tagged for tags, or "".
func (p *Pool) subjectTag(tags []failure.Reason) string {
	if len(tags) == 0 {
		return ""
	}
	if p.cfg.Policy.SubjectTag != "" {
		return p.cfg.Policy.SubjectTag
	}
	return DefaultSubjectTag
}

// unverified names the first check whose action is drop and whose verdict
// is PROCESSING_FAILED (SES could not run it; reconcile sets every verdict
// so, as it cannot know them), or "".
func (p *Pool) unverified(n *sesnotify.Notification) string {
	for _, c := range p.checks(n.Receipt) {
		if c.action == ActionDrop && strings.EqualFold(c.status, sesnotify.StatusProcessingFail) {
			return c.name
		}
	}
	return ""
}
