package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

const (
	testTopic  = "arn:aws:sns:us-east-1:123456789012:mailrelay-inbound"
	testBucket = "mailrelay-inbound"
)

const testAliases = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
  - address: news@relay.example.com
    forward_to: [bob@example.org, carol@example.org]
`

// harness is an in-process relay with stand-ins for S3, SES and SNS's
// signing, driven through its real HTTP endpoint.
type harness struct {
	t       testing.TB
	signer  *snstest.Signer
	s3      *fakes.S3
	ses     *fakes.SES
	cfg     *config.Config
	awsOpts *awsclient.Options
	relay   *Relay
	stop    context.CancelFunc
	done    chan error
}

func newHarness(t testing.TB, mutate func(*config.Config)) *harness {
	t.Helper()
	signer := snstest.New(t)
	prefix, closeCert := signer.Serve()
	t.Cleanup(closeCert)
	s3, err := fakes.NewS3()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Close)
	ses := fakes.NewSES(fakes.SESOptions{})
	if err := ses.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ses.Close)

	dir := t.TempDir()
	aliasFile := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliasFile, []byte(testAliases), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{
		"--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--sns-topic-arns", testTopic, "--sns-cert-url-prefixes", prefix,
		"--spool-dir", filepath.Join(dir, "spool"), "--aliases-file", aliasFile,
		"--workers", "4", "--retry-min", "50ms", "--retry-max", "200ms", "--shutdown-timeout", "5s",
		"--s3-timeout", "2s", "--ses-timeout", "2s",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	h := &harness{t: t, signer: signer, s3: s3, ses: ses, cfg: cfg, awsOpts: &awsclient.Options{
		AWSConfig: &aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		},
		S3Endpoint:  s3.URL(),
		SESEndpoint: ses.URL(),
	}}
	h.start()
	t.Cleanup(func() { h.shutdown() })
	return h
}

// start runs the relay (again) on the same spool and configuration.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Relay, 1)
	h.done = make(chan error, 1)
	h.stop = cancel
	log := slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		h.done <- Serve(ctx, h.cfg, Deps{Logger: log, AWS: h.awsOpts, Ready: func(r *Relay) { ready <- r }})
	}()
	select {
	case h.relay = <-ready:
	case err := <-h.done:
		h.t.Fatalf("relay did not start: %v", err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("relay did not start in 10s")
	}
}

// shutdown stops the relay as SIGTERM would and waits for it.
func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("relay exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Error("relay did not stop in 15s")
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// receivedS3 is an SES "Received" notification for a mail stored in S3.
func receivedS3(sesID, key string, recipients []string, verdicts map[string]string) string {
	v := func(name string) map[string]string {
		if s, ok := verdicts[name]; ok {
			return map[string]string{"status": s}
		}
		return map[string]string{"status": "PASS"}
	}
	n := map[string]any{
		"notificationType": "Received",
		"mail": map[string]any{
			"timestamp": "2026-11-23T10:00:00.000Z", "source": "dora@example.net",
			"messageId": sesID, "destination": recipients,
		},
		"receipt": map[string]any{
			"timestamp": "2026-11-23T10:00:00.000Z", "recipients": recipients,
			"spamVerdict": v("spam"), "virusVerdict": v("virus"), "spfVerdict": v("spf"),
			"dkimVerdict": v("dkim"), "dmarcVerdict": v("dmarc"),
			"action": map[string]any{"type": "S3", "topicArn": testTopic, "bucketName": testBucket, "objectKey": key},
		},
	}
	b, _ := json.Marshal(n)
	return string(b)
}

// post sends body to /sns and returns the status code.
func (h *harness) post(body []byte) int {
	h.t.Helper()
	resp, err := http.Post("http://"+h.relay.InboundAddr+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// deliver stores mail in S3 and posts its signed notification; it must be acknowledged.
func (h *harness) deliver(snsID, sesID string, mail []byte, recipients ...string) {
	h.t.Helper()
	key := "inbound/" + sesID
	if err := h.s3.Put(testBucket, key, mail); err != nil {
		h.t.Fatal(err)
	}
	body := h.signer.Notification(testTopic, snsID, "Amazon SES Email Receipt Notification", receivedS3(sesID, key, recipients, nil), "2")
	if code := h.post(body); code != http.StatusOK {
		h.t.Fatalf("delivery %s answered %d, want 200", snsID, code)
	}
}

func (h *harness) waitSent(n int) []fakes.Sent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.ses.WaitSent(ctx, n); err != nil {
		h.t.Fatalf("waiting for %d sends (have %d): %v", n, len(h.ses.Sent()), err)
	}
	return h.ses.Sent()
}

// waitFor polls cond until true or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testMail(i int) []byte {
	return []byte(fmt.Sprintf("From: Dora Sender <dora@example.net>\r\nTo: shop@relay.example.com\r\nSubject: test %d\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m%d@example.net>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.net\r\n"+
		"Return-Path: <bounce@example.net>\r\n\r\nbody %d\r\n", i, i, i))
}
