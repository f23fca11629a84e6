package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sqsintake"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// sqsClient adapts awsclient's SQS client to sqsintake.Client.
type sqsClient struct{ c *awsclient.SQS }

func (a sqsClient) Receive(ctx context.Context, visibility time.Duration) ([]sqsintake.Message, error) {
	msgs, err := a.c.Receive(ctx, visibility)
	out := make([]sqsintake.Message, len(msgs))
	for i, m := range msgs {
		out[i] = sqsintake.Message{ReceiptHandle: m.ReceiptHandle, Body: m.Body, ReceiveCount: m.ReceiveCount, SentAt: m.SentAt}
	}
	return out, err
}

func (a sqsClient) Delete(ctx context.Context, receiptHandle string) error {
	return a.c.Delete(ctx, receiptHandle)
}

func (a sqsClient) ChangeVisibility(ctx context.Context, receiptHandle string, d time.Duration) error {
	return a.c.ChangeVisibility(ctx, receiptHandle, d)
}

// workQueue is what the workers take from: the queue (the spool, or
// PostgreSQL with --database-url) alone with the HTTP intake only; with
// SQS, the SQS intake merged with the queue (which holds the intake's sent
// records, markers and dead letters, redriven dead letters, reconciled
// mail and, with http,sqs, what /sns stored). The SQS intake is closed after the workers (stops run in
// reverse): every message still held is then visible again at once.
func (r *run) workQueue(ctx context.Context, s queue, verifier *sns.Verifier, awsOverride *awsclient.Options) (mailproc.Queue, error) {
	cfg := r.cfg
	if !cfg.HasIntake(config.IntakeSQS) {
		return s, nil
	}
	store, ok := s.(sqsintake.Store)
	if !ok {
		return nil, fmt.Errorf("the SQS intake keeps its sent-records in the queue, and %T cannot hold them", s)
	}
	o := r.awsOptions(awsOverride)
	client, err := awsclient.NewSQS(ctx, o, awsclient.SQSOptions{QueueURL: cfg.SQSQueueURL, MaxMessages: cfg.SQSMaxMessages})
	if err != nil {
		return nil, fmt.Errorf("sqs client: %w", err)
	}
	// A queue that does not exist or may not be read is a configuration
	// mistake: refuse to start. SQS unreachable is not: start, not ready
	// (readiness follows the receives).
	if err := client.Check(ctx); failure.IsPermanent(err) {
		return nil, fmt.Errorf("sqs queue %s: %w", cfg.SQSQueueURL, err)
	} else if err != nil {
		r.log.Warn("sqs queue not reachable at start; not ready until a receive succeeds", "queue", cfg.SQSQueueURL, "err", err)
	}
	q, err := sqsintake.New(sqsintake.Config{
		Client:     sqsClient{client},
		Store:      store,
		Verifier:   verifier,
		TopicARNs:  cfg.SNSTopicARNs,
		Visibility: cfg.SQSVisibilityTimeout,
		RetryMin:   cfg.RetryMin,
		RetryMax:   cfg.RetryMax,
		HeldMaxAge: cfg.RetryMaxAge + 24*time.Hour,
		Metrics:    r.m,
		Logger:     r.log.With("component", "sqs"),
	})
	if err != nil {
		return nil, err
	}
	r.sqs = q
	r.onStop(q.Close)
	merged := mailproc.Merge(context.WithoutCancel(ctx), r.log.With("component", "queue"), s, q)
	r.onStop(merged.Close)
	return merged, nil
}
