package sqsintake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/inbound/sqsintake"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

const topic = "arn:aws:sns:us-east-1:000000000000:mailrelay-intake-test"

// localstack is the endpoint of a real LocalStack (localstack/run.sh
// start). Without one the tests skip loudly, unless
// MAILRELAY_REQUIRE_LOCALSTACK=1 (CI), when they fail.
func localstack(t *testing.T) string {
	t.Helper()
	u := os.Getenv("LOCALSTACK_URL")
	if u == "" {
		u = "http://127.0.0.1:4566"
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u + "/_localstack/health")
	if err == nil {
		resp.Body.Close()
		return u
	}
	if os.Getenv("MAILRELAY_REQUIRE_LOCALSTACK") == "1" {
		t.Fatalf("LocalStack is not running at %s: %v", u, err)
	}
	t.Skipf("SKIPPING: needs a real SQS: LocalStack is not running at %s (localstack/run.sh start): %v", u, err)
	return ""
}

type env struct {
	t        *testing.T
	raw      *sqs.Client // the test's own view of the queue
	url      string
	signer   *snstest.Signer
	spool    *spool.Spool
	q        *sqsintake.Queue
	metrics  *telemetry.Metrics
	retryMax time.Duration
}

func newEnv(t *testing.T) *env {
	endpoint := localstack(t)
	ctx := context.Background()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(endpoint)}
	raw := sqs.NewFromConfig(cfg)
	out, err := raw.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("intake-test-%d", time.Now().UnixNano()))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = raw.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	m := telemetry.NewMetrics()
	client, err := awsclient.NewSQS(ctx, awsclient.Options{AWSConfig: &cfg, Metrics: m}, awsclient.SQSOptions{QueueURL: *out.QueueUrl})
	if err != nil {
		t.Fatal(err)
	}
	signer := snstest.New(t)
	v, err := sns.NewVerifier(sns.VerifierOptions{CertURLPrefixes: []string{signer.CertURL()[:strings.LastIndex(signer.CertURL(), "/")+1]}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := spool.Open(t.TempDir(), spool.Options{ReserveBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := &env{t: t, raw: raw, url: *out.QueueUrl, signer: signer, spool: s, metrics: m, retryMax: time.Hour}
	e.q, err = sqsintake.New(sqsintake.Config{
		Client: adapter{client}, Store: s, Verifier: v, TopicARNs: []string{topic},
		Visibility: 3 * time.Second, RetryMin: time.Second, RetryMax: e.retryMax, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.q.Close)
	return e
}

// adapter is cmd's adapter of awsclient's SQS client (the intake may not
// import awsclient; its tests may).
type adapter struct{ c *awsclient.SQS }

func (a adapter) Receive(ctx context.Context, v time.Duration) ([]sqsintake.Message, error) {
	msgs, err := a.c.Receive(ctx, v)
	out := make([]sqsintake.Message, len(msgs))
	for i, m := range msgs {
		out[i] = sqsintake.Message{ReceiptHandle: m.ReceiptHandle, Body: m.Body, ReceiveCount: m.ReceiveCount, SentAt: m.SentAt}
	}
	return out, err
}
func (a adapter) Delete(ctx context.Context, h string) error { return a.c.Delete(ctx, h) }
func (a adapter) ChangeVisibility(ctx context.Context, h string, d time.Duration) error {
	return a.c.ChangeVisibility(ctx, h, d)
}

func (e *env) send(body []byte) {
	e.t.Helper()
	if _, err := e.raw.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(e.url), MessageBody: aws.String(string(body))}); err != nil {
		e.t.Fatal(err)
	}
}

// counts is the queue's visible and in-flight messages as SQS tells them.
func (e *env) counts() (visible, inflight string) {
	e.t.Helper()
	a, err := e.raw.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(e.url),
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Attributes["ApproximateNumberOfMessages"], a.Attributes["ApproximateNumberOfMessagesNotVisible"]
}

// next is Next bounded in time.
func (e *env) next(d time.Duration) (spool.Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return e.q.Next(ctx)
}

func (e *env) count(outcome, reason string) float64 {
	return testutil.ToFloat64(e.metrics.SQSMessages.WithLabelValues(outcome, reason))
}

func notification(id string) string {
	return `{"notificationType":"Received","mail":{"messageId":"` + id + `","destination":["a@relay.example.com"]},"receipt":{"recipients":["a@relay.example.com"],"action":{"type":"SNS","encoding":"UTF8"}},"content":"Subject: x\r\n\r\nbody"}`
}

func TestCompleteDeletesAndDeduplicates(t *testing.T) {
	e := newEnv(t)
	id := snstest.NewMessageID()
	body := e.signer.Notification(topic, id, "Amazon SES Email Receipt Notification", notification("ses-1"), "2")
	e.send(body)
	got, err := e.next(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.TopicARN != topic || got.Attempts != 0 || !spool.Held(got) {
		t.Fatalf("entry %+v", got)
	}
	if !e.q.Holds(id) {
		t.Fatal("not held while worked on")
	}
	if err := e.q.MarkSent(id, "k", "ses-sent-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Complete(id); err != nil {
		t.Fatal(err)
	}
	if v, f := e.counts(); v != "0" || f != "0" {
		t.Fatalf("after Complete: %s visible, %s in flight; want the message deleted", v, f)
	}
	if _, err := e.spool.Pending(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("still pending in the spool: %v", err)
	}
	// The same notification again (SNS delivers at least once): deleted
	// as a duplicate, never handed out.
	e.send(body)
	if got, err := e.next(8 * time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("duplicate handed out: %+v, %v", got, err)
	}
	if n := e.count(sqsintake.OutcomeDuplicate, "finished"); n != 1 {
		t.Fatalf("duplicates counted: %v", n)
	}
	if v, f := e.counts(); v != "0" || f != "0" {
		t.Fatalf("duplicate not deleted: %s visible, %s in flight", v, f)
	}
}

func TestRetryRedeliversWithSentRecord(t *testing.T) {
	e := newEnv(t)
	id := snstest.NewMessageID()
	e.send(e.signer.Notification(topic, id, "", notification("ses-2"), "1"))
	got, err := e.next(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.q.MarkSent(id, "first", "ses-sent-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(id, time.Now().Add(time.Second), "ses_throttled"); err != nil {
		t.Fatal(err)
	}
	if e.q.Holds(id) {
		t.Fatal("still held after Retry")
	}
	got, err = e.next(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.Attempts != 1 || got.Sent["first"] != "ses-sent-1" {
		t.Fatalf("redelivered entry %+v: want attempt 1 with the sent record", got)
	}
	if n := e.count(sqsintake.OutcomeAccepted, "resumed"); n != 1 {
		t.Fatalf("resumed counted %v", n)
	}
	if err := e.q.DeadLetter(id, "ses_rejected: test"); err != nil {
		t.Fatal(err)
	}
	dls, err := e.spool.DeadLetters(0)
	if err != nil || len(dls) != 1 || dls[0].ID != id {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if v, f := e.counts(); v != "0" || f != "0" {
		t.Fatalf("dead-lettered message not deleted: %s visible, %s in flight", v, f)
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name    string
		body    func(e *env) []byte
		outcome string
		reason  string
		deleted bool
	}{
		{"forged signature", func(e *env) []byte {
			b := e.signer.Notification(topic, snstest.NewMessageID(), "", notification("x"), "2")
			return []byte(strings.Replace(string(b), `"Message":"{`, `"Message":"{ `, 1))
		}, sqsintake.OutcomeRejected, "bad_signature", true},
		{"replayed (stale Timestamp)", func(e *env) []byte {
			m := &sns.Message{Type: sns.TypeNotification, MessageId: snstest.NewMessageID(), TopicArn: topic, Message: notification("x"),
				Timestamp: snstest.Timestamp(time.Now().Add(-3 * time.Hour))}
			return e.signer.Body(m, "2")
		}, sqsintake.OutcomeRejected, "stale_timestamp", true},
		{"raw delivery on (not an envelope)", func(e *env) []byte { return []byte(notification("x")) },
			sqsintake.OutcomeRejected, "malformed", false},
		{"topic not allowed", func(e *env) []byte {
			return e.signer.Notification("arn:aws:sns:us-east-1:000000000000:other", snstest.NewMessageID(), "", notification("x"), "2")
		}, sqsintake.OutcomeRejected, "topic_not_allowed", false},
		{"unsubscribe confirmation", func(e *env) []byte {
			return e.signer.UnsubscribeConfirmation(topic, e.signer.CertURL()+"?Action=ConfirmSubscription")
		}, sqsintake.OutcomeIgnored, "unsubscribe_confirmation", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.send(tt.body(e))
			if got, err := e.next(8 * time.Second); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("handed out: %+v, %v", got, err)
			}
			if n := e.count(tt.outcome, tt.reason); n != 1 {
				t.Fatalf("%s/%s counted %v times", tt.outcome, tt.reason, n)
			}
			v, f := e.counts()
			if tt.deleted && (v != "0" || f != "0") {
				t.Fatalf("not deleted: %s visible, %s in flight", v, f)
			}
			if !tt.deleted && f != "1" {
				t.Fatalf("want it kept invisible for the redrive policy: %s visible, %s in flight", v, f)
			}
		})
	}
}

func TestCloseReleasesHeldMessages(t *testing.T) {
	e := newEnv(t)
	id := snstest.NewMessageID()
	e.send(e.signer.Notification(topic, id, "", notification("ses-3"), "2"))
	if _, err := e.next(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Held past its visibility timeout: the heartbeat keeps it invisible.
	time.Sleep(5 * time.Second)
	if v, f := e.counts(); v != "0" || f != "1" {
		t.Fatalf("while held: %s visible, %s in flight", v, f)
	}
	e.q.Close()
	if v, _ := e.counts(); v != "1" {
		t.Fatalf("after Close: %s visible, want the message given back at once", v)
	}
	if _, err := e.spool.Pending(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("an unsent held entry should be forgotten on release: %v", err)
	}
}
