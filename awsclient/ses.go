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
	// configSet is the configuration set of every send ("" none).
	configSet string
	v1        *ses.Client
	v2        *sesv2.Client
}

// SendRaw sends raw (a complete RFC 5322 message) from the envelope sender
// from to the envelope destinations, and returns SES's message id. An empty
// from lets SES take the sender from the message's From header. With a
// configuration set, the send names it and carries the tag TagAlias with
// from (the alias the copy is sent as) encoded by AliasTag. Errors are
// classified (see Classify).
func (c *SES) SendRaw(ctx context.Context, from string, destinations []string, raw []byte) (messageID string, err error) {
	if len(destinations) == 0 {
		return "", failure.Permanent(failure.ReasonSESInvalidParameter, errors.New("ses send: no destinations"))
	}
	var source *string
	if from != "" {
		source = aws.String(from)
	}
	var configSet *string
	var tag string
	if c.configSet != "" {
		configSet, tag = aws.String(c.configSet), AliasTag(from)
	}
	if c.mode == SendModeSESv2 {
		in := &sesv2.SendEmailInput{
			FromEmailAddress:     source,
			Destination:          &sesv2types.Destination{ToAddresses: destinations},
			Content:              &sesv2types.EmailContent{Raw: &sesv2types.RawMessage{Data: raw}},
			ConfigurationSetName: configSet,
		}
		if tag != "" {
			in.EmailTags = []sesv2types.MessageTag{{Name: aws.String(TagAlias), Value: aws.String(tag)}}
		}
		err = c.dep.do(ctx, "SendEmail", c.timeout, func(ctx context.Context) error {
			out, err := c.v2.SendEmail(ctx, in)
			if err != nil {
				return fmt.Errorf("sesv2 send email: %w", err)
			}
			messageID = aws.ToString(out.MessageId)
			return nil
		})
		return messageID, err
	}
	in := &ses.SendRawEmailInput{
		Source:               source,
		Destinations:         destinations,
		RawMessage:           &sestypes.RawMessage{Data: raw},
		ConfigurationSetName: configSet,
	}
	if tag != "" {
		in.Tags = []sestypes.MessageTag{{Name: aws.String(TagAlias), Value: aws.String(tag)}}
	}
	err = c.dep.do(ctx, "SendRawEmail", c.timeout, func(ctx context.Context) error {
		out, err := c.v1.SendRawEmail(ctx, in)
		if err != nil {
			return fmt.Errorf("ses send raw email: %w", err)
		}
		messageID = aws.ToString(out.MessageId)
		return nil
	})
	return messageID, err
}

// TagAlias is the name of the SES message tag that carries the alias a
// copy is sent as (with a configuration set).
const TagAlias = "alias"

// maxTagValue is the longest SES message tag value.
const maxTagValue = 256

// AliasTag encodes an alias address as an SES message tag value, which
// allows only ASCII letters, digits, '_' and '-' (at most 256): every
// other byte becomes '_' ("shop.news@relay.example.com" →
// "shop_news_relay_example_com"), cut at 256 bytes; "" stays "" (no tag).
// It is for grouping in SES event data, not reversible.
func AliasTag(alias string) string {
	b := []byte(alias)
	if len(b) > maxTagValue {
		b = b[:maxTagValue]
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// BreakerState reports the SES breaker's state.
func (c *SES) BreakerState() gobreaker.State { return c.dep.state() }
