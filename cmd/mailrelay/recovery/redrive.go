// Package recovery brings back mail the relay never saw: it redrives SNS
// deliveries that landed in the subscription's dead-letter SQS queue (the
// relay was down or answered 5xx for longer than SNS retries), and it finds
// mail objects SES stored in S3 that the relay never processed.
//
// Both work through small interfaces (Queue, Poster, Bucket, Submitter) so
// that the logic is tested with fakes; cmd/mailrelay wires aws-sdk-go-v2
// and the relay's admin API.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Message is one message received from the dead-letter queue: Body is the
// signed SNS JSON exactly as SNS had POSTed it.
type Message struct {
	ID      string // SQS MessageId
	Receipt string // receipt handle, for Delete
	Body    string
}

// Queue is the part of SQS that Redrive needs.
type Queue interface {
	// Receive returns up to max messages, long-polling up to wait.
	Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Delete removes a received message.
	Delete(ctx context.Context, receipt string) error
}

// Poster delivers one SNS body to the relay and returns the HTTP status
// POST /sns would answer. cmd/mailrelay's implementation hands it to the
// admin API's POST /sns/redrive: authenticated, and taking Timestamps as
// old as a dead-letter queue keeps messages (the public /sns refuses them
// as replays). An error means the relay did not decide (unreachable, or
// the admin API refused the request itself): the run stops.
type Poster interface {
	Post(ctx context.Context, body []byte) (status int, err error)
}

// RedriveOptions bound a Redrive run.
type RedriveOptions struct {
	// Max is the most messages handled (received and posted) in one run;
	// 0 means DefaultRedriveMax.
	Max int
	// Poll is the long-poll wait of each receive, clamped to 1–5 s
	// (0: DefaultPoll).
	Poll time.Duration
	// Wait keeps receiving for this long after the queue first looks
	// empty (0: stop at the first empty receive).
	Wait time.Duration
	// DeleteRejected deletes messages the relay answered with a final 4xx
	// (forged, foreign topic, malformed) instead of leaving them queued.
	DeleteRejected bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// maxRepeatReceives is how many receives in a row that bring only messages
// already handled in this run end it.
const maxRepeatReceives = 3

// Defaults of RedriveOptions.
const (
	// DefaultRedriveMax is the default bound on messages per run.
	DefaultRedriveMax = 10000
	// DefaultPoll is the default long-poll wait of each receive.
	DefaultPoll = 2 * time.Second
)

// Rejection is a message the relay refused with a final 4xx.
type Rejection struct {
	ID      string
	Status  int
	Deleted bool
}

// RedriveResult summarises a run. Accepted includes duplicates (the relay
// answers 200 for a MessageId it already stored). Left counts received
// messages still in the queue: rejected and not deleted, or not posted
// because the run stopped (they reappear after the visibility timeout).
type RedriveResult struct {
	Received   int
	Accepted   int
	Rejected   int
	Left       int
	Rejections []Rejection
}

func (r RedriveResult) String() string {
	return fmt.Sprintf("received %d, accepted %d (duplicates included), rejected %d, left in queue %d", r.Received, r.Accepted, r.Rejected, r.Left)
}

// ErrRelayUnavailable is returned (wrapped) when the relay answers 5xx or
// 429 or cannot be reached: the run stops and the rest stays queued.
var ErrRelayUnavailable = errors.New("relay unavailable")

// Redrive receives messages from q in batches of 10 and posts each body
// unchanged to p. A message is deleted only after a 200. A 4xx is final and
// recorded (deleted only with DeleteRejected). A 5xx, 429 or transport
// error stops the run with ErrRelayUnavailable; what was not posted stays
// queued. The run ends at an empty receive (after Wait), at Max messages,
// or after a few receives in a row that bring only messages already
// handled in this run (refused ones whose visibility timeout ran out).
func Redrive(ctx context.Context, q Queue, p Poster, o RedriveOptions) (RedriveResult, error) {
	if o.Max <= 0 {
		o.Max = DefaultRedriveMax
	}
	switch {
	case o.Poll <= 0:
		o.Poll = DefaultPoll
	case o.Poll < time.Second:
		o.Poll = time.Second
	case o.Poll > 5*time.Second:
		o.Poll = 5 * time.Second
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	var res RedriveResult
	seen := map[string]bool{}
	var emptySince time.Time
	repeats := 0
	// Each iteration handles at least one new message or is an empty
	// receive; both are bounded, so is the loop.
	for iter := 0; res.Received < o.Max && iter < 2*o.Max+1000; iter++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(10, o.Max-res.Received)
		msgs, err := q.Receive(ctx, n, o.Poll)
		if err != nil {
			return res, fmt.Errorf("receive: %w", err)
		}
		var fresh []Message
		for _, m := range msgs {
			if !seen[m.ID] {
				seen[m.ID] = true
				fresh = append(fresh, m)
			}
		}
		if len(fresh) == 0 {
			if len(msgs) > 0 {
				// Only messages this run already left in the queue (their
				// visibility timeout ran out); others may be behind them,
				// so give up only after a few such receives in a row.
				if repeats++; repeats >= maxRepeatReceives {
					return res, nil
				}
				continue
			}
			if emptySince.IsZero() {
				emptySince = now()
			}
			if now().Sub(emptySince) >= o.Wait {
				return res, nil
			}
			continue
		}
		emptySince, repeats = time.Time{}, 0
		res.Received += len(fresh)
		for i, m := range fresh {
			status, err := p.Post(ctx, []byte(m.Body))
			switch {
			case err == nil && status == http.StatusOK:
				if err := q.Delete(ctx, m.Receipt); err != nil {
					// Accepted but still queued: a later run posts it again,
					// which the relay recognises as a duplicate.
					res.Accepted++
					res.Left += len(fresh) - i
					return res, fmt.Errorf("delete %s after the relay accepted it: %w", m.ID, err)
				}
				res.Accepted++
			case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests:
				rj := Rejection{ID: m.ID, Status: status}
				if o.DeleteRejected {
					if err := q.Delete(ctx, m.Receipt); err != nil {
						res.Rejected++
						res.Rejections = append(res.Rejections, rj)
						res.Left += len(fresh) - i
						return res, fmt.Errorf("delete rejected %s: %w", m.ID, err)
					}
					rj.Deleted = true
				} else {
					res.Left++
				}
				res.Rejected++
				res.Rejections = append(res.Rejections, rj)
			default:
				res.Left += len(fresh) - i
				if err == nil {
					err = fmt.Errorf("status %d", status)
				}
				return res, fmt.Errorf("%w: message %s: %w (the rest is left in the queue for a later run)", ErrRelayUnavailable, m.ID, err)
			}
		}
	}
	return res, nil
}
