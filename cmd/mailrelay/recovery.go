package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/mailrelay/mailrelay/recovery"
)

// redriveSNSDLQ drains the SNS subscription's dead-letter SQS queue back
// into the relay's /sns endpoint (see recovery.Redrive).
func redriveSNSDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive-sns-dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	queueURL := fs.String("queue-url", "", "URL of the subscription's dead-letter SQS queue (required)")
	relayURL := fs.String("relay", "http://127.0.0.1:8080/sns", "the relay's inbound SNS endpoint")
	max := fs.Int("max", recovery.DefaultRedriveMax, "handle at most this many messages")
	wait := fs.Duration("wait", 0, "keep receiving this long after the queue looks empty (0: stop at the first empty receive)")
	poll := fs.Duration("poll", 2*time.Second, "long-poll wait of each receive (1s to 5s)")
	deleteRejected := fs.Bool("delete-rejected", false, "delete messages the relay refuses with a final 4xx instead of leaving them queued")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queueURL == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("redrive-sns-dlq: --queue-url is required and no arguments are taken")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	q := &sqsQueue{c: sqs.NewFromConfig(cfg), url: *queueURL}
	p := &recovery.HTTPPoster{URL: *relayURL, Client: &http.Client{Timeout: 30 * time.Second}}
	res, err := recovery.Redrive(ctx, q, p, recovery.RedriveOptions{Max: *max, Wait: *wait, Poll: *poll, DeleteRejected: *deleteRejected})
	for _, rj := range res.Rejections {
		action := "left in the queue"
		if rj.Deleted {
			action = "deleted"
		}
		fmt.Fprintf(stdout, "rejected: message %s: relay answered %d (final); %s\n", rj.ID, rj.Status, action)
	}
	fmt.Fprintln(stdout, res)
	if err != nil {
		return fmt.Errorf("redrive-sns-dlq: %w", err)
	}
	return nil
}

// sqsQueue is recovery.Queue on aws-sdk-go-v2 SQS.
type sqsQueue struct {
	c   *sqs.Client
	url string
}

func (q *sqsQueue) Receive(ctx context.Context, max int, wait time.Duration) ([]recovery.Message, error) {
	out, err := q.c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(q.url),
		MaxNumberOfMessages: int32(max),
		WaitTimeSeconds:     int32(wait / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("sqs receive: %w", err)
	}
	msgs := make([]recovery.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msgs = append(msgs, recovery.Message{ID: aws.ToString(m.MessageId), Receipt: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body)})
	}
	return msgs, nil
}

func (q *sqsQueue) Delete(ctx context.Context, receipt string) error {
	if _, err := q.c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: aws.String(receipt)}); err != nil {
		return fmt.Errorf("sqs delete: %w", err)
	}
	return nil
}
