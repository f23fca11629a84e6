package awsclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/smithy-go"

	"github.com/mailrelay/mailrelay/mailproc/pace"
)

// SendQuota asks SES for the account's sending quota: SES v1 GetSendQuota,
// or SESv2 GetAccount in the sesv2 send mode (the same API the sends use,
// so the same permissions and endpoint). The call is timed like the others
// but does not go through the SES breaker: a missing permission to read
// the quota must not stop the sends. Errors are classified.
func (c *SES) SendQuota(ctx context.Context) (pace.Quota, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.mode == SendModeSESv2 {
		out, err := c.v2.GetAccount(ctx, &sesv2.GetAccountInput{})
		if err != nil {
			return pace.Quota{}, Classify(ServiceSES, fmt.Errorf("sesv2 get account: %w", err))
		}
		if out.SendQuota == nil {
			return pace.Quota{}, errors.New("sesv2 get account: no SendQuota in the answer")
		}
		q := out.SendQuota
		return pace.Quota{Max24HourSend: q.Max24HourSend, MaxSendRate: q.MaxSendRate, SentLast24Hours: q.SentLast24Hours}, nil
	}
	out, err := c.v1.GetSendQuota(ctx, &ses.GetSendQuotaInput{})
	if err != nil {
		return pace.Quota{}, Classify(ServiceSES, fmt.Errorf("ses get send quota: %w", err))
	}
	return pace.Quota{Max24HourSend: out.Max24HourSend, MaxSendRate: out.MaxSendRate, SentLast24Hours: out.SentLast24Hours}, nil
}

// noThrottleRetry makes the SDK give a throttled SES call back at once
// instead of retrying it after a short sleep: the relay's pacer slows down
// and retries it after a token, rather than at full speed.
var noThrottleRetry = retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && throttleCodes[apiErr.ErrorCode()] {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
})

// newSESRetryer is newRetryer without retries of throttled calls.
func newSESRetryer(maxAttempts int) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = maxAttempts
		so.MaxBackoff = maxRetryBackoff
		so.Retryables = append([]retry.IsErrorRetryable{noThrottleRetry}, so.Retryables...)
	})
}
