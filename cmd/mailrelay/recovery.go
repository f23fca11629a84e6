package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/recovery"
)

// redriveSNSDLQ drains the SNS subscription's dead-letter SQS queue back
// into the relay through the admin API's POST /sns/redrive (see
// recovery.Redrive): the same signature check, allow-list, de-duplication
// and durable write as /sns, behind the admin token, and taking messages
// older than /sns's --sns-max-age.
func redriveSNSDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive-sns-dlq", flag.ContinueOnError)
	queueURL := fs.String("queue-url", "", "URL of the subscription's dead-letter SQS queue (required)")
	relayURL := fs.String("relay", "", "no longer used: the redrive goes through the admin API (--admin); given, it is refused")
	adminAddr := adminFlag(fs, "")
	max := fs.Int("max", recovery.DefaultRedriveMax, "handle at most this many messages")
	wait := fs.Duration("wait", 0, "keep receiving this long after the queue looks empty (0: stop at the first empty receive)")
	poll := fs.Duration("poll", 2*time.Second, "long-poll wait of each receive (1s to 5s)")
	deleteRejected := fs.Bool("delete-rejected", false, "delete messages the relay refuses with a final 4xx instead of leaving them queued")
	if err := config.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *queueURL == "" || fs.NArg() > 0 {
		return &config.UsageError{Err: errors.New("redrive-sns-dlq: --queue-url is required and no arguments are taken")}
	}
	if *relayURL != "" {
		// The public /sns refuses what a dead-letter queue holds (older
		// than --sns-max-age: a replay); the admin API takes it from an
		// operator with the token.
		return &config.UsageError{Err: fmt.Errorf("redrive-sns-dlq: --relay %s: the redrive now goes through the admin API (POST /sns/redrive): give --admin HOST:PORT or set %s (and %s)", *relayURL, envAdminURL, envAdminToken)}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	q := &sqsQueue{c: sqs.NewFromConfig(cfg), url: *queueURL}
	p := adminPoster{c: adminClientOS(*adminAddr)}
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

// reconcile lists mail objects in S3 that the relay never processed (see
// recovery.Reconcile) and, with --submit, hands them to the relay's admin
// endpoint POST /reconcile.
func reconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	bucket := fs.String("bucket", "", "S3 bucket SES stores inbound mail in (required)")
	prefix := fs.String("prefix", "", "object key prefix of the SES S3 action")
	since := fs.String("since", "", "objects modified since: RFC 3339 time or a duration before now, e.g. 6h (required)")
	minAge := fs.Duration("min-age", 15*time.Minute, "leave objects younger than this alone (mail still in flight)")
	topicARN := fs.String("topic-arn", "", "topic ARN the relay writes into the notifications (one of its --sns-topic-arns; empty: its first)")
	max := fs.Int("max", 10000, "report at most this many objects")
	domains := fs.String("domains", "", "comma-separated relay domains (those of the aliases file): only recipients on them are taken from Received headers; empty takes every recipient")
	submit := fs.Bool("submit", false, "hand each object with recipients to the relay's admin endpoint POST /reconcile (by reference)")
	adminAddr := adminFlag(fs, ", for --submit")
	if err := config.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *bucket == "" || *since == "" || fs.NArg() > 0 {
		return &config.UsageError{Err: errors.New("reconcile: --bucket and --since are required and no arguments are taken")}
	}
	t, err := recovery.ParseSince(*since, time.Now())
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	pathStyle := os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	b := &s3Bucket{c: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle }), bucket: *bucket}
	var sub recovery.Submitter
	if *submit {
		sub = adminSubmitter{c: adminClientOS(*adminAddr)}
	}
	found, err := recovery.Reconcile(ctx, b, sub, recovery.ReconcileOptions{Bucket: *bucket, Prefix: *prefix, Since: t, MinAge: *minAge, TopicARN: *topicARN, Max: *max, Domains: domainList(*domains)})
	failed := printFound(stdout, found, *submit)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("reconcile: %d of %d objects could not be read or handed over", failed, len(found))
	}
	return nil
}

// printFound writes one line per object and a summary; it returns how many
// failed.
func printFound(w io.Writer, found []recovery.Found, submit bool) (failed int) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tMODIFIED\tBYTES\tRECIPIENTS\tSTATUS")
	submitted := 0
	for _, f := range found {
		status := "unprocessed"
		switch {
		case f.Err != nil:
			status = "error: " + f.Err.Error()
			failed++
		case f.Submitted:
			status = "submitted"
			submitted++
		case len(f.Recipients) == 0:
			status = "no recipients found"
		}
		rcpts := strings.Join(f.Recipients, ",")
		if rcpts == "" {
			rcpts = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", f.Key, f.LastModified.UTC().Format(time.RFC3339), f.Size, rcpts, status)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d unprocessed objects, %d submitted, %d errors\n", len(found), submitted, failed)
	return failed
}

// s3Bucket is recovery.Bucket on aws-sdk-go-v2 S3.
type s3Bucket struct {
	c      *s3.Client
	bucket string
}

func (b *s3Bucket) List(ctx context.Context, prefix string, fn func(recovery.Object) error) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(b.bucket)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	p := s3.NewListObjectsV2Paginator(b.c, in)
	for page := 0; p.HasMorePages() && page < 1_000_000; page++ {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 list: %w", err)
		}
		for _, o := range out.Contents {
			if err := fn(recovery.Object{Key: aws.ToString(o.Key), LastModified: aws.ToTime(o.LastModified), Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *s3Bucket) Head(ctx context.Context, key string, max int64) ([]byte, error) {
	out, err := b.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=0-%d", max-1))})
	if err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, max))
	if err != nil {
		return nil, fmt.Errorf("s3 read: %w", err)
	}
	return data, nil
}

// domainList splits a comma-separated --domains value, dropping empty items.
func domainList(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}
