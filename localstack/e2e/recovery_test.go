//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestRedriveSNSDLQ: the relay is down when SNS delivers, so LocalStack
// (which never retries an HTTP delivery) puts the signed body in the
// subscription's dead-letter queue. Once the relay is back,
// `mailrelay redrive-sns-dlq` hands it to the admin API: the mail is forwarded exactly
// once, a forged body put in the queue is refused and left, then deleted
// with --delete-rejected, and the queue ends empty.
func TestRedriveSNSDLQ(t *testing.T) {
	ctx := context.Background()
	cfg, s3c, snsc := setupLocalStack(t, ctx)
	sqsc := sqs.NewFromConfig(cfg)
	run := fmt.Sprintf("redrive%d", time.Now().UnixNano())
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("mailrelay-e2e-" + run), Attributes: map[string]string{"SignatureVersion": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	topicARN := *topic.TopicArn
	t.Cleanup(func() { _, _ = snsc.DeleteTopic(ctx, &sns.DeleteTopicInput{TopicArn: topic.TopicArn}) })
	// A short visibility timeout: a message the relay refused shows up again
	// within the run, which must not post it twice.
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("mailrelay-e2e-dlq-" + run), Attributes: map[string]string{"VisibilityTimeout": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	queueURL := *q.QueueUrl
	t.Cleanup(func() { _, _ = sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) })
	qa, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	if err != nil {
		t.Fatal(err)
	}
	dlqARN := qa.Attributes["QueueArn"]

	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliases, []byte("domains: ["+relayDomain+"]\naliases:\n  - address: "+alias+"\n    forward_to: ["+forwardTo+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	awsEnv := []string{"AWS_ENDPOINT_URL=" + localstack, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	r := &relayProc{t: t, inbound: freeAddr(t), health: freeAddr(t), admin: freeAddr(t), logPath: filepath.Join(dir, "relay.log")}
	r.env = append(append(os.Environ(), awsEnv...),
		"RELAY_LISTEN="+r.inbound, "RELAY_HEALTH_LISTEN="+r.health, "RELAY_ADMIN_LISTEN="+r.admin,
		"RELAY_SNS_TOPIC_ARNS="+topicARN, "RELAY_SNS_CERT_URL_PREFIXES="+localstack+"/_aws/sns/",
		"RELAY_SPOOL_DIR="+filepath.Join(dir, "spool"), "RELAY_ALIASES_FILE="+aliases,
		"RELAY_WORKERS=2", "RELAY_RETRY_MIN=200ms", "RELAY_RETRY_MAX=2s", "RELAY_LOG_LEVEL=info",
		// LocalStack answers GetSendQuota with a sandbox quota (1 mail/s): pacing
		// to it would make the run crawl; pacing is tested with the SES stand-in.
		"RELAY_SES_PACE=false")
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			b, _ := os.ReadFile(r.logPath)
			t.Logf("relay log (tail):\n%s", tail(b, 60))
		}
	})

	// The relay confirms the subscription (with the DLQ as redrive policy),
	// then every pod is gone.
	r.start()
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": dlqARN})
	sub, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topicARN), Protocol: aws.String("http"),
		Endpoint: aws.String("http://" + r.inbound + "/sns"), ReturnSubscriptionArn: true,
		Attributes: map[string]string{"RedrivePolicy": string(redrive)}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "subscription confirmed by the relay", 20*time.Second, func() bool {
		a, err := snsc.GetSubscriptionAttributes(ctx, &sns.GetSubscriptionAttributesInput{SubscriptionArn: sub.SubscriptionArn})
		return err == nil && a.Attributes["PendingConfirmation"] == "false"
	})
	r.stop()

	tag := run + "-00"
	raw := []byte("X-E2E-Run: " + tag + "\r\nFrom: Bob <bob@example.net>\r\nTo: " + alias + "\r\nSubject: redriven\r\nMessage-ID: <" + tag + "@example.net>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody of " + tag + "\r\n")
	key := "inbound/" + tag
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(raw)}); err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topicARN), Subject: aws.String("Amazon SES Email Receipt Notification"),
		Message: aws.String(notification("ses-"+tag, key, topicARN))}); err != nil {
		t.Fatal(err)
	}
	var body string
	waitFor(t, "the failed delivery in the dead-letter queue", 20*time.Second, func() bool {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 1})
		if err != nil || len(out.Messages) == 0 {
			return false
		}
		body = *out.Messages[0].Body
		return true
	})
	if !strings.Contains(body, `"Signature"`) || !strings.Contains(body, "ses-"+tag) {
		t.Fatalf("dead-letter body is not the signed SNS delivery: %.300s", body)
	}
	// A forged copy (message changed, signature kept): the relay answers 403.
	forged := strings.Replace(body, "ses-"+tag, "ses-forged-"+tag, 1)
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(forged)}); err != nil {
		t.Fatal(err)
	}

	r.start()
	redriveCmd := func(extra ...string) (string, error) {
		args := append([]string{"redrive-sns-dlq", "--queue-url", queueURL, "--admin", r.admin, "--poll", "1s"}, extra...)
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), awsEnv...)
		out, err := cmd.CombinedOutput()
		t.Logf("mailrelay %s:\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	waitFor(t, "the delivery and the forged copy visible", 10*time.Second, func() bool { v, _ := queueCounts(t, sqsc, queueURL); return v == 2 })
	out, err := redriveCmd()
	if err != nil {
		t.Fatalf("redrive: %v", err)
	}
	if !strings.Contains(out, "received 2, accepted 1 (duplicates included), rejected 1, left in queue 1") || !strings.Contains(out, "answered 403") {
		t.Fatalf("redrive summary: %s", out)
	}
	waitFor(t, "the redriven mail forwarded", 30*time.Second, func() bool { return len(forwardedTagged(t, tag)) >= 1 })

	waitFor(t, "the forged copy visible again", 10*time.Second, func() bool { v, _ := queueCounts(t, sqsc, queueURL); return v == 1 })
	out, err = redriveCmd("--delete-rejected")
	if err != nil {
		t.Fatalf("redrive --delete-rejected: %v", err)
	}
	if !strings.Contains(out, "received 1, accepted 0 (duplicates included), rejected 1, left in queue 0") {
		t.Fatalf("redrive --delete-rejected summary: %s", out)
	}
	time.Sleep(1500 * time.Millisecond) // past the visibility timeout: anything left would show
	if n := queueDepth(t, sqsc, queueURL); n != 0 {
		t.Fatalf("queue holds %d messages after the redrive, want 0", n)
	}
	time.Sleep(time.Second) // a duplicate would show up now
	if got := forwardedTagged(t, tag); len(got) != 1 {
		t.Fatalf("forwarded %d times, want exactly once", len(got))
	} else if got[0].Source != alias {
		t.Errorf("SES Source %q, want %s", got[0].Source, alias)
	}
}

// queueDepth is visible plus in-flight messages.
func queueDepth(t *testing.T, c *sqs.Client, url string) int {
	v, f := queueCounts(t, c, url)
	return v + f
}

// queueCounts returns the visible and the in-flight messages.
func queueCounts(t *testing.T, c *sqs.Client, url string) (visible, inflight int) {
	t.Helper()
	a, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		t.Fatal(err)
	}
	n, m := 0, 0
	fmt.Sscan(a.Attributes["ApproximateNumberOfMessages"], &n)
	fmt.Sscan(a.Attributes["ApproximateNumberOfMessagesNotVisible"], &m)
	return n, m
}

func forwardedTagged(t *testing.T, tag string) []sentMail {
	var out []sentMail
	for _, m := range sesSent(t) {
		if mt := tagRe.FindSubmatch(rawOf(t, m)); mt != nil && string(mt[1]) == tag {
			out = append(out, m)
		}
	}
	return out
}

// TestReconcileListsUnprocessed: objects left in the bucket are listed by
// `mailrelay reconcile` with the recipient SES named in its Received header
// (or To when there is none); objects outside the prefix are not.
func TestReconcileListsUnprocessed(t *testing.T) {
	ctx := context.Background()
	s3c := s3.NewFromConfig(awsConfig(), func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil && !strings.Contains(err.Error(), "BucketAlready") {
		t.Fatalf("%v (is LocalStack running? localstack/run.sh start)", err)
	}
	run := fmt.Sprintf("reconcile%d/", time.Now().UnixNano())
	objs := map[string]string{
		run + "a":           "Received: from mx.example.net by inbound-smtp.us-east-1.amazonaws.com with SMTP id a\r\n for shop@relay.example.com;\r\n Mon, 23 Nov 2026 10:00:00 +0000\r\nTo: other@relay.example.com\r\n\r\nbody\r\n",
		run + "b":           "From: b@example.net\r\nTo: Sales <sales@relay.example.com>\r\n\r\nbody\r\n",
		"x" + run + "other": "To: nobody@relay.example.com\r\n\r\n",
	}
	for k, v := range objs {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(v)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		})
	}
	cmd := exec.Command(binary, "reconcile", "--bucket", bucket, "--prefix", run, "--since", "1h", "--min-age", "0s")
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+localstack, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test")
	out, err := cmd.CombinedOutput()
	t.Logf("mailrelay reconcile:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 5 && strings.HasPrefix(f[0], run) {
			lines[f[0]] = f[3]
		}
	}
	if lines[run+"a"] != "shop@relay.example.com" || lines[run+"b"] != "sales@relay.example.com" || len(lines) != 2 {
		t.Fatalf("listed %v", lines)
	}
	if !strings.Contains(string(out), "2 unprocessed objects, 0 submitted, 0 errors") {
		t.Fatalf("summary missing")
	}
}
