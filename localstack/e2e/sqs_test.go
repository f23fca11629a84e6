//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"

	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// TestSQSIntakeTwoReplicas: SNS topic → SQS queue (raw message delivery
// off) → two relays in --intake sqs mode on the same queue, one of them
// killed with kill -9 mid-run and never restarted. Every mail is forwarded;
// the kill may duplicate at most the one send its single worker had in
// flight (SES has no idempotency key), byte-identical. Both ways to keep
// the intake's sent records, markers and dead letters: each replica its
// own spool, or one PostgreSQL shared by both (--database-url).
func TestSQSIntakeTwoReplicas(t *testing.T) {
	for _, backend := range []string{"spool", "postgres"} {
		t.Run(backend, func(t *testing.T) { sqsTwoReplicas(t, backend) })
	}
}

func sqsTwoReplicas(t *testing.T, backend string) {
	ctx := context.Background()
	cfg, s3c, snsc := setupLocalStack(t, ctx)
	sqsc := sqs.NewFromConfig(cfg)
	name := fmt.Sprintf("mailrelay-e2e-sqs-%d", time.Now().UnixNano())
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	topicARN := *topic.TopicArn
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) })
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "false"},
		ReturnSubscriptionArn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = snsc.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: sub.SubscriptionArn}) })

	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliases, []byte("domains: ["+relayDomain+"]\naliases:\n  - address: "+alias+"\n    forward_to: ["+forwardTo+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var dbURL string
	if backend == "postgres" {
		dbURL = pgtest.NewDatabase(t)
	}
	newRelay := func(n string) *relayProc {
		r := &relayProc{t: t, inbound: freeAddr(t), health: freeAddr(t), admin: freeAddr(t), logPath: filepath.Join(dir, n+".log")}
		r.env = append(os.Environ(),
			"AWS_ENDPOINT_URL="+localstack, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
			"RELAY_LISTEN="+r.inbound, "RELAY_HEALTH_LISTEN="+r.health, "RELAY_ADMIN_LISTEN="+r.admin,
			"RELAY_INTAKE=sqs", "RELAY_SQS_QUEUE_URL="+*q.QueueUrl, "RELAY_SQS_VISIBILITY_TIMEOUT=3s", "RELAY_SQS_MAX_MESSAGES=2",
			"RELAY_SNS_TOPIC_ARNS="+topicARN, "RELAY_SNS_CERT_URL_PREFIXES="+localstack+"/_aws/sns/",
			"RELAY_SPOOL_DIR="+filepath.Join(dir, n+"-spool"), "RELAY_ALIASES_FILE="+aliases,
			"RELAY_WORKERS=1", "RELAY_RETRY_MIN=200ms", "RELAY_RETRY_MAX=2s", "RELAY_LOG_LEVEL=info",
			// LocalStack answers GetSendQuota with a sandbox quota (1 mail/s): pacing
			// to it would make the run crawl; pacing is tested with the SES stand-in.
			"RELAY_SES_PACE=false")
		if dbURL != "" {
			r.env = append(r.env, "RELAY_DATABASE_URL="+dbURL)
		}
		t.Cleanup(func() {
			r.stop()
			if t.Failed() {
				b, _ := os.ReadFile(r.logPath)
				t.Logf("relay %s log (tail):\n%s", n, tail(b, 40))
			}
		})
		r.start()
		return r
	}
	a, b := newRelay("a"), newRelay("b")

	run := fmt.Sprintf("sqs%d", time.Now().UnixNano())
	var mails []sample
	for _, s := range loadCorpus(t, run) {
		if !s.malformed {
			mails = append(mails, s)
		}
	}
	for _, s := range mails {
		key := "inbound/" + s.tag
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(s.raw)}); err != nil {
			t.Fatal(err)
		}
		if _, err := snsc.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topicARN), Subject: aws.String("Amazon SES Email Receipt Notification"),
			Message: aws.String(notification("ses-"+s.tag, key, topicARN))}); err != nil {
			t.Fatal(err)
		}
	}
	forwarded := func() map[string][]sentMail {
		byTag := map[string][]sentMail{}
		for _, m := range sesSent(t) {
			if mt := tagRe.FindSubmatch(rawOf(t, m)); mt != nil && strings.HasPrefix(string(mt[1]), run) {
				byTag[string(mt[1])] = append(byTag[string(mt[1])], m)
			}
		}
		return byTag
	}
	// Kill a once it has forwarded something, while mail is still queued.
	waitFor(t, "relay a forwarding", 60*time.Second, func() bool {
		return a.metric("mailrelay_messages_total", `outcome="forwarded"`) >= 2
	})
	a.kill9()
	byTag := map[string][]sentMail{}
	waitFor(t, fmt.Sprintf("%d mails forwarded through SQS", len(mails)), 120*time.Second, func() bool {
		byTag = forwarded()
		return len(byTag) >= len(mails)
	})
	time.Sleep(4 * time.Second) // a redelivered duplicate would show up now (visibility 3 s)
	byTag = forwarded()
	duplicates := 0
	for _, s := range mails {
		got := byTag[s.tag]
		switch {
		case len(got) == 1:
		case len(got) == 2 && bytes.Equal(rawOf(t, got[0]), rawOf(t, got[1])):
			duplicates++
			t.Logf("%s: sent twice (in flight at the kill)", s.name)
		default:
			t.Errorf("%s: forwarded %d times", s.name, len(got))
		}
	}
	if duplicates > 1 {
		t.Errorf("%d duplicates from one kill of a relay with one worker: want at most 1", duplicates)
	}
	if n := b.metric("mailrelay_sqs_messages_total", `outcome="rejected"`); n != 0 {
		t.Errorf("relay b rejected %v genuine SNS messages", n)
	}
	// Every message is deleted once its mail is forwarded.
	waitFor(t, "queue empty", 30*time.Second, func() bool {
		out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		return err == nil && out.Attributes["ApproximateNumberOfMessages"] == "0" && out.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
	})
	if dbURL != "" {
		// Every notification finished in the shared database: nothing held
		// left behind by the killed replica.
		waitFor(t, "every row finished in PostgreSQL", 30*time.Second, func() bool {
			pending, done := dbCounts(t, dbURL)
			return pending == 0 && done == len(mails)
		})
	}
	t.Logf("%s: %d mails through SNS → SQS → two relays, one killed with kill -9: all forwarded, %d duplicated by the kill", backend, len(mails), duplicates)
}

// dbCounts returns the pending and finished rows of the shared queue.
func dbCounts(t *testing.T, url string) (pending, done int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'done')
FROM relay_messages`).Scan(&pending, &done); err != nil {
		t.Fatal(err)
	}
	return pending, done
}
