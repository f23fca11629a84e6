package sns

import (
	"context"
	"errors"
	"fmt"
)

var (
	// ErrSubscribeURL: the SubscribeURL fails the URL rule; it is never
	// fetched.
	ErrSubscribeURL = errors.New("sns: subscribe URL not allowed")
	// ErrConfirm: the confirmation GET failed, timed out or answered non-2xx
	// (SNS sends the confirmation again).
	ErrConfirm = errors.New("sns: confirming subscription failed")
	// ErrNotConfirmation: Confirm was called with a message that is not a
	// SubscriptionConfirmation.
	ErrNotConfirmation = errors.New("sns: not a subscription confirmation")
)

// maxConfirmBody caps how much of the confirmation response is read.
const maxConfirmBody = 64 << 10

// Confirm confirms the subscription of a SubscriptionConfirmation message by
// a GET of its SubscribeURL, which must pass URLAllowed (otherwise the URL is
// not fetched and the error wraps ErrSubscribeURL). The GET is bounded by
// FetchTimeout and observed as OpConfirmSubscription; a failure or non-2xx
// status wraps ErrConfirm. Verify m before confirming.
func (v *Verifier) Confirm(ctx context.Context, m *Message) error {
	if m.Type != TypeSubscriptionConfirmation {
		return fmt.Errorf("%w: type %.64q", ErrNotConfirmation, m.Type)
	}
	if !v.rule.originAllowed(m.SubscribeURL) {
		return fmt.Errorf("%w: %.200q", ErrSubscribeURL, m.SubscribeURL)
	}
	_, err := v.get(ctx, OpConfirmSubscription, m.SubscribeURL, maxConfirmBody, func(code int) bool { return code >= 200 && code < 300 })
	if err != nil && !errors.Is(err, errTooLarge) {
		return fmt.Errorf("%w: %w", ErrConfirm, err)
	}
	return nil
}
