package awsclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	sestypes "github.com/aws/aws-sdk-go-v2/service/ses/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sesv2types "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// SES sends raw mails, through SES v1 SendRawEmail or SES v2 SendEmail
// (Content.Raw) depending on Options.SendMode.
type SES struct {
	dep     *dependency
	timeout time.Duration
	mode    string
	v1      *ses.Client
	v2      *sesv2.Client
}

// SendRaw sends raw (a complete RFC 5322 message) from the envelope sender
// from to the envelope destinations, and returns SES's message id. An empty
// from lets SES take the sender from the message's From header. Errors are
// classified (see Classify).
func (c *SES) SendRaw(ctx context.Context, from string, destinations []string, raw []byte) (messageID string, err error) {
	if len(destinations) == 0 {
		return "", failure.Permanent(failure.ReasonSESInvalidParameter, errors.New("ses send: no destinations"))
	}
	var source *string
	if from != "" {
		source = aws.String(from)
	}
	if c.mode == SendModeSESv2 {
		err = c.dep.do(ctx, "SendEmail", c.timeout, func(ctx context.Context) error {
			out, err := c.v2.SendEmail(ctx, &sesv2.SendEmailInput{
				FromEmailAddress: source,
				Destination:      &sesv2types.Destination{ToAddresses: destinations},
				Content:          &sesv2types.EmailContent{Raw: &sesv2types.RawMessage{Data: raw}},
			})
			if err != nil {
				return fmt.Errorf("sesv2 send email: %w", err)
			}
			messageID = aws.ToString(out.MessageId)
			return nil
		})
		return messageID, err
	}
	err = c.dep.do(ctx, "SendRawEmail", c.timeout, func(ctx context.Context) error {
		out, err := c.v1.SendRawEmail(ctx, &ses.SendRawEmailInput{
			Source:       source,
			Destinations: destinations,
			RawMessage:   &sestypes.RawMessage{Data: raw},
		})
		if err != nil {
			return fmt.Errorf("ses send raw email: %w", err)
		}
		messageID = aws.ToString(out.MessageId)
		return nil
	})
	return messageID, err
}

// BreakerState reports the SES breaker's state.
func (c *SES) BreakerState() gobreaker.State { return c.dep.state() }
