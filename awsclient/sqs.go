package awsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/sony/gobreaker/v2"
)

// ServiceSQS is the service label of the SQS client's metrics.
const ServiceSQS = "sqs"

// SQS defaults.
const (
	// SQSWaitTime is the long poll of ReceiveMessage (SQS's maximum).
	SQSWaitTime = 20 * time.Second
	// DefaultSQSTimeout bounds one Delete, ChangeVisibility or
	// GetQueueAttributes call (all attempts).
	DefaultSQSTimeout = 5 * time.Second
	// sqsReceiveSlack is what a long poll may take beyond its wait.
	sqsReceiveSlack = 10 * time.Second
	// MaxSQSVisibility is SQS's largest visibility timeout (12 hours).
	MaxSQSVisibility = 12 * time.Hour
)

// SQSOptions configures NewSQS; the rest (credentials, region, endpoint,
// attempts, breaker, metrics) comes from Options like S3's and SES's.
type SQSOptions struct {
	// QueueURL is the queue read. Required.
	QueueURL string
	// MaxMessages is the most messages one ReceiveMessage asks for (1..10,
	// default 10).
	MaxMessages int
	// Endpoint overrides the endpoint the SDK would resolve (from
	// AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, ...); tests only.
	Endpoint string
	// Timeout bounds the calls other than ReceiveMessage (default
	// DefaultSQSTimeout). A receive waits SQSWaitTime plus a margin.
	Timeout time.Duration
}

// SQSMessage is one received message.
type SQSMessage struct {
	MessageID     string
	ReceiptHandle string
	Body          []byte
	// ReceiveCount is SQS's ApproximateReceiveCount (1 at the first receive).
	ReceiveCount int
	// SentAt is when the message was put in the queue (SentTimestamp):
	// set by SQS, not by the sender.
	SentAt time.Time
}

// SQS reads one queue: long polls on an HTTP client of their own (a long
// poll must not meet the fail-fast timeouts of S3 and SES), at most the
// configured SDK attempts, a breaker, and every call timed in
// mailrelay_external_call_duration_seconds{service="sqs"}.
type SQS struct {
	client   *sqs.Client
	dep      *dependency
	queueURL string
	max      int32
	timeout  time.Duration
}

// NewSQS builds the SQS client. It loads the AWS configuration (unless
// opts.AWSConfig is set) but makes no request.
func NewSQS(ctx context.Context, opts Options, so SQSOptions) (*SQS, error) {
	opts = opts.withDefaults()
	if so.QueueURL == "" {
		return nil, errors.New("awsclient: no SQS queue URL")
	}
	if so.MaxMessages <= 0 {
		so.MaxMessages = 10
	}
	if so.MaxMessages > 10 {
		return nil, fmt.Errorf("awsclient: SQS max messages %d: want 1..10", so.MaxMessages)
	}
	if so.Timeout <= 0 {
		so.Timeout = DefaultSQSTimeout
	}
	cfg, err := loadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	dep := newDependency(ServiceSQS, opts)
	c := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		o.HTTPClient = newLongPollClient(opts)
		o.Retryer = newRetryer(opts.MaxAttempts)
		o.RetryMaxAttempts = opts.MaxAttempts
		o.APIOptions = append(slices.Clip(o.APIOptions), dep.timer.add)
		if so.Endpoint != "" {
			o.BaseEndpoint = aws.String(so.Endpoint)
		}
	})
	return &SQS{client: c, dep: dep, queueURL: so.QueueURL, max: int32(so.MaxMessages), timeout: so.Timeout}, nil
}

// newLongPollClient is newHTTPClient for SQS: the same dial and TLS
// timeouts, but a response-header timeout above the long poll's wait.
func newLongPollClient(o Options) aws.HTTPClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = o.ConnectTimeout
		}).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = o.TLSHandshakeTimeout
			t.ResponseHeaderTimeout = SQSWaitTime + sqsReceiveSlack
			t.MaxIdleConnsPerHost = o.MaxIdleConnsPerHost
			t.IdleConnTimeout = o.IdleConnTimeout
		}).
		Freeze()
}

// Receive long-polls (SQSWaitTime) for up to MaxMessages messages and
// makes them invisible for visibility. It returns no messages and no error
// when the wait passed without any. Errors are classified.
func (c *SQS) Receive(ctx context.Context, visibility time.Duration) ([]SQSMessage, error) {
	var out []SQSMessage
	err := c.dep.do(ctx, "ReceiveMessage", SQSWaitTime+sqsReceiveSlack, func(ctx context.Context) error {
		res, err := c.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(c.queueURL),
			MaxNumberOfMessages: c.max,
			WaitTimeSeconds:     int32(SQSWaitTime / time.Second),
			VisibilityTimeout:   visibilitySeconds(visibility),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{
				sqstypes.MessageSystemAttributeNameApproximateReceiveCount,
				sqstypes.MessageSystemAttributeNameSentTimestamp,
			},
		})
		if err != nil {
			return fmt.Errorf("sqs receive message: %w", err)
		}
		for _, m := range res.Messages {
			msg := SQSMessage{
				MessageID:     aws.ToString(m.MessageId),
				ReceiptHandle: aws.ToString(m.ReceiptHandle),
				Body:          []byte(aws.ToString(m.Body)),
				ReceiveCount:  1,
			}
			if n, err := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && n > 0 {
				msg.ReceiveCount = n
			}
			if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
				msg.SentAt = time.UnixMilli(ms)
			}
			out = append(out, msg)
		}
		return nil
	})
	return out, err
}

// Delete deletes a received message.
func (c *SQS) Delete(ctx context.Context, receiptHandle string) error {
	return c.dep.do(ctx, "DeleteMessage", c.timeout, func(ctx context.Context) error {
		_, err := c.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(c.queueURL), ReceiptHandle: aws.String(receiptHandle)})
		if err != nil {
			return fmt.Errorf("sqs delete message: %w", err)
		}
		return nil
	})
}

// ChangeVisibility makes a received message visible again after d (0: at
// once; at most MaxSQSVisibility).
func (c *SQS) ChangeVisibility(ctx context.Context, receiptHandle string, d time.Duration) error {
	return c.dep.do(ctx, "ChangeMessageVisibility", c.timeout, func(ctx context.Context) error {
		_, err := c.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(c.queueURL), ReceiptHandle: aws.String(receiptHandle), VisibilityTimeout: visibilitySeconds(d),
		})
		if err != nil {
			return fmt.Errorf("sqs change message visibility: %w", err)
		}
		return nil
	})
}

// Check asks for the queue's attributes: the queue exists and the relay may
// read it (readiness, start-up).
func (c *SQS) Check(ctx context.Context) error {
	return c.dep.do(ctx, "GetQueueAttributes", c.timeout, func(ctx context.Context) error {
		_, err := c.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(c.queueURL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameVisibilityTimeout},
		})
		if err != nil {
			return fmt.Errorf("sqs get queue attributes: %w", err)
		}
		return nil
	})
}

// Available reports whether SQS is worth calling (see dependency.available).
func (c *SQS) Available() bool { return c.dep.available() }

// BreakerState reports the SQS breaker's state.
func (c *SQS) BreakerState() gobreaker.State { return c.dep.state() }

// visibilitySeconds is d in whole seconds (rounded up) within SQS's range.
func visibilitySeconds(d time.Duration) int32 {
	d = min(max(d, 0), MaxSQSVisibility)
	return int32((d + time.Second - 1) / time.Second)
}
