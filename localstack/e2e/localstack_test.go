//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	_ "github.com/emersion/go-message/charset" // decode every charset of the corpus
	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// workers is the relay's pool size in these tests.
const workers = 4

const (
	relayDomain = "relay.example.com"
	alias       = "shop@relay.example.com"
	forwardTo   = "alice@example.org"
	bucket      = "mailrelay-e2e"
	topicName   = "mailrelay-e2e"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var (
	localstack = env("LOCALSTACK_URL", "http://127.0.0.1:4566")
	binary     = env("MAILRELAY_BIN", "../../bin/mailrelay")
)

func awsConfig() aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(localstack),
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// relayProc is the mailrelay binary running as a separate process.
type relayProc struct {
	t               *testing.T
	cmd             *exec.Cmd
	env             []string
	inbound, health string
	admin           string
	logPath         string
}

func (r *relayProc) start() {
	r.t.Helper()
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	r.cmd = exec.Command(binary, "serve")
	r.cmd.Env = r.env
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v (run `make build` first)", binary, err)
	}
	go func() { _ = r.cmd.Wait(); logf.Close() }()
	waitFor(r.t, "relay ready", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + r.health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (r *relayProc) kill9() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	waitFor(r.t, "relay gone", 10*time.Second, func() bool { return r.cmd.ProcessState != nil })
}

func (r *relayProc) stop() {
	if r.cmd != nil && r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		waitFor(r.t, "relay stopped", 30*time.Second, func() bool { return r.cmd.ProcessState != nil })
	}
}

// metric returns the sum of a counter's samples whose labels contain match.
func (r *relayProc) metric(name, match string) float64 {
	resp, err := http.Get("http://" + r.health + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, match) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample is one mail of the corpus, tagged for this run.
type sample struct {
	name      string
	raw       []byte // as put in S3
	body      []byte
	malformed bool
	tag       string
}

func loadCorpus(t *testing.T, run string) []sample {
	var out []sample
	for i, f := range mailtest.Corpus() {
		b := f.Raw
		tag := fmt.Sprintf("%s-%02d", run, i)
		nl := "\r\n"
		if !bytes.Contains(b, []byte("\r\n")) {
			nl = "\n"
		}
		malformed := f.Malformed()
		raw := b
		if !malformed { // a tag line could turn a malformed header into a valid one
			raw = append([]byte("X-E2E-Run: "+tag+nl), b...)
		}
		s := sample{name: f.Name, raw: raw, tag: tag, malformed: malformed}
		if i := headerEnd(raw); i >= 0 {
			s.body = raw[i:]
		}
		out = append(out, s)
	}
	if len(out) < 30 {
		t.Fatalf("corpus: %d mails, want ≥ 30", len(out))
	}
	return out
}

func headerEnd(b []byte) int {
	crlf, lf := bytes.Index(b, []byte("\r\n\r\n")), bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf+2 <= lf+1):
		return crlf + 4
	case lf >= 0:
		return lf + 2
	}
	return -1
}

func notification(sesID, key string, topicARN string) string {
	n := sesnotify.Received(sesID, time.Now(), []string{alias}, sesnotify.S3Action(topicARN, bucket, key)).Pass()
	n.Mail.Source = "sender@example.net"
	return string(n.JSON())
}

type sentMail struct {
	Source        string
	RawData       string
	RawDataBase64 string
	Destination   map[string][]string
}

func sesSent(t *testing.T) []sentMail {
	resp, err := http.Get(localstack + "/_aws/ses")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Messages []sentMail }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Messages
}

func rawOf(t *testing.T, m sentMail) []byte {
	if m.RawDataBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(m.RawDataBase64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []byte(m.RawData)
}

var tagRe = regexp.MustCompile(`(?m)^X-E2E-Run: (\S+)`)

// setupLocalStack checks that LocalStack runs and creates what every test
// needs: the bucket and the relay domain as a verified SES identity.
func setupLocalStack(t *testing.T, ctx context.Context) (aws.Config, *s3.Client, *sns.Client) {
	t.Helper()
	if resp, err := http.Get(localstack + "/_localstack/health"); err != nil {
		t.Fatalf("LocalStack is not running at %s (localstack/run.sh start): %v", localstack, err)
	} else {
		resp.Body.Close()
	}
	cfg := awsConfig()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil && !strings.Contains(err.Error(), "BucketAlready") {
		t.Fatal(err)
	}
	if _, err := ses.NewFromConfig(cfg).VerifyDomainIdentity(ctx, &ses.VerifyDomainIdentityInput{Domain: aws.String(relayDomain)}); err != nil {
		t.Fatal(err)
	}
	return cfg, s3c, sns.NewFromConfig(cfg)
}

func TestLocalStackEndToEnd(t *testing.T) {
	ctx := context.Background()
	_, s3c, snsc := setupLocalStack(t, ctx)
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(topicName), Attributes: map[string]string{"SignatureVersion": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	topicARN := *topic.TopicArn

	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliases, []byte("domains: ["+relayDomain+"]\naliases:\n  - address: "+alias+"\n    forward_to: ["+forwardTo+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &relayProc{t: t, inbound: freeAddr(t), health: freeAddr(t), admin: freeAddr(t), logPath: filepath.Join(dir, "relay.log")}
	r.env = append(os.Environ(),
		"AWS_ENDPOINT_URL="+localstack, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"RELAY_LISTEN="+r.inbound, "RELAY_HEALTH_LISTEN="+r.health, "RELAY_ADMIN_LISTEN="+r.admin,
		"RELAY_SNS_TOPIC_ARNS="+topicARN, "RELAY_SNS_CERT_URL_PREFIXES="+localstack+"/_aws/sns/",
		"RELAY_SPOOL_DIR="+filepath.Join(dir, "spool"), "RELAY_ALIASES_FILE="+aliases,
		"RELAY_WORKERS="+strconv.Itoa(workers), "RELAY_RETRY_MIN=200ms", "RELAY_RETRY_MAX=2s", "RELAY_LOG_LEVEL=info",
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
	r.start()

	// Subscribe the relay; it must confirm the subscription itself.
	endpoint := "http://" + r.inbound + "/sns"
	sub, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topicARN), Protocol: aws.String("http"),
		Endpoint: aws.String(endpoint), ReturnSubscriptionArn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = snsc.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: sub.SubscriptionArn}) })
	waitFor(t, "subscription confirmed by the relay", 20*time.Second, func() bool {
		a, err := snsc.GetSubscriptionAttributes(ctx, &sns.GetSubscriptionAttributesInput{SubscriptionArn: sub.SubscriptionArn})
		return err == nil && a.Attributes["PendingConfirmation"] == "false"
	})

	run := fmt.Sprintf("run%d", time.Now().UnixNano())
	mails := loadCorpus(t, run)
	publish := func(s sample) {
		t.Helper()
		key := "inbound/" + s.tag
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(s.raw)}); err != nil {
			t.Fatal(err)
		}
		if _, err := snsc.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topicARN), Subject: aws.String("Amazon SES Email Receipt Notification"),
			Message: aws.String(notification("ses-"+s.tag, key, topicARN))}); err != nil {
			t.Fatal(err)
		}
	}

	// First half, then kill -9 once every one of them is acknowledged
	// (workers are still busy), restart on the same spool, second half.
	half := len(mails) / 2
	for _, s := range mails[:half] {
		publish(s)
	}
	waitFor(t, "first half acknowledged", 30*time.Second, func() bool {
		return r.metric("mailrelay_inbound_requests_total", `code="200",type="Notification"`) >= float64(half)
	})
	r.kill9()
	r.start()
	for _, s := range mails[half:] {
		publish(s)
	}

	want := 0
	for _, s := range mails {
		if !s.malformed {
			want++
		}
	}
	byTag := map[string][]sentMail{}
	waitFor(t, fmt.Sprintf("%d forwarded mails in LocalStack's SES", want), 60*time.Second, func() bool {
		byTag = map[string][]sentMail{}
		for _, m := range sesSent(t) {
			if mt := tagRe.FindSubmatch(rawOf(t, m)); mt != nil && strings.HasPrefix(string(mt[1]), run) {
				byTag[string(mt[1])] = append(byTag[string(mt[1])], m)
			}
		}
		return len(byTag) >= want
	})
	time.Sleep(time.Second) // a duplicate would show up now

	// The one kill -9 may duplicate a copy whose SendRawEmail was in flight
	// (SES has no idempotency key; docs/design.md): at most one per worker,
	// each byte-identical to the other. Anything more is a bug.
	duplicates := 0
	for _, s := range mails {
		got := byTag[s.tag]
		if len(got) == 2 && bytes.Equal(rawOf(t, got[0]), rawOf(t, got[1])) {
			duplicates++
			t.Logf("%s: sent twice (in flight at the kill)", s.name)
			got = got[:1]
		}
		switch {
		case s.malformed && len(got) != 0:
			t.Errorf("%s: malformed but forwarded", s.name)
		case s.malformed:
		case len(got) != 1:
			t.Errorf("%s: forwarded %d times, want once", s.name, len(byTag[s.tag]))
		default:
			raw := rawOf(t, got[0])
			if got[0].Source != alias {
				t.Errorf("%s: SES Source %q, want %s", s.name, got[0].Source, alias)
			}
			if i := headerEnd(raw); i < 0 || !bytes.Equal(raw[i:], s.body) {
				t.Errorf("%s: body changed on the way", s.name)
			}
			m, err := mail.CreateReader(bytes.NewReader(raw))
			if err != nil {
				t.Errorf("%s: forwarded mail does not parse: %v", s.name, err)
				continue
			}
			from, err := m.Header.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Address != alias {
				t.Errorf("%s: From %v (%v)", s.name, from, err)
			}
			for _, k := range []string{"Return-Path", "Sender", "DKIM-Signature"} {
				if m.Header.Has(k) {
					t.Errorf("%s: %s kept", s.name, k)
				}
			}
		}
	}
	malformed := 0
	for _, s := range mails {
		if s.malformed {
			malformed++
		}
	}
	// The malformed samples are kept as dead letters (they survive the kill).
	waitFor(t, "malformed mail dead-lettered", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + r.admin + "/deadletters")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var items []struct{ Reason string }
		if json.NewDecoder(resp.Body).Decode(&items) != nil {
			return false
		}
		n := 0
		for _, it := range items {
			if strings.HasPrefix(it.Reason, string(failure.ReasonMalformedMail)) {
				n++
			}
		}
		return n == malformed
	})
	if duplicates > workers {
		t.Errorf("%d duplicates from one kill, more than the %d sends that can be in flight", duplicates, workers)
	}
	t.Logf("%d mails: %d forwarded through LocalStack (kill -9 and restart after %d; %d duplicated by the kill), %d malformed dead-lettered",
		len(mails), want, half, duplicates, malformed)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var _ = io.Discard
