package mailproc

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/pace"
)

// Pacer keeps sends within the SES account's quota (implemented by
// *pace.Pacer). Wait takes n tokens, one per recipient, before a mail is
// downloaded; Throttled says SES answered Throttling. A Pacer that also has
// Available() bool (false near the daily quota) keeps workers from taking
// new work meanwhile.
type Pacer interface {
	Wait(ctx context.Context, n int) error
	Throttled()
}

// maxThrottledSends is how many times one copy is sent when SES throttles
// it, each time after a token of the slowed-down pace; then the mail goes
// back to the spool.
const maxThrottledSends = 3

// paceAvailable reports whether the pacer lets workers take new work.
func (p *Pool) paceAvailable() bool {
	a, ok := p.cfg.Pacer.(availability)
	return !ok || a.Available()
}

// takeTokens waits for a token per recipient of every copy still to send,
// before the mail is fetched: a mail waiting for its turn holds no memory.
func (p *Pool) takeTokens(ctx context.Context, groups []group, sent map[string]string) error {
	if p.cfg.Pacer == nil {
		return nil
	}
	n := 0
	for _, g := range groups {
		if _, done := sent[g.key()]; !done {
			n += len(g.forwardTo)
		}
	}
	if err := p.cfg.Pacer.Wait(ctx, n); err != nil {
		if errors.Is(err, pace.ErrNearDailyQuota) {
			return failure.Transient(failure.ReasonSESDailyQuota, err)
		}
		return failure.Transient(failure.ReasonTimeout, fmt.Errorf("waiting for send tokens: %w", err))
	}
	return nil
}

// send sends one copy. A copy SES throttles is sent again after a token
// of the slowed-down pace, up to maxThrottledSends times.
func (p *Pool) send(ctx context.Context, from string, to []string, raw []byte) (string, error) {
	for i := 1; ; i++ {
		id, err := p.cfg.Sender.SendRaw(ctx, from, to, raw)
		if err == nil || p.cfg.Pacer == nil || failure.ReasonOf(err) != failure.ReasonSESThrottled {
			return id, err
		}
		p.cfg.Pacer.Throttled()
		if i == maxThrottledSends {
			return "", err
		}
		if werr := p.cfg.Pacer.Wait(ctx, len(to)); werr != nil {
			return "", err
		}
	}
}
