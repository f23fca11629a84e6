package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// bodyOf returns what follows the header block.
func bodyOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[i+4:]
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[i+2:]
	}
	t.Fatalf("no header/body separator in %q", raw)
	return nil
}

// parts returns the raw bytes of every leaf MIME part, in order.
func parts(t *testing.T, raw []byte) [][]byte {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

func TestForwardWithAttachment(t *testing.T) {
	h := newHarness(t, nil)
	src := mailtest.Mail("attachment.eml")
	h.Deliver("sns-1", "ses-1", src, "shop@relay.example.com")
	sent := h.WaitSent(1)[0]

	if !slices.Equal(sent.Destinations, []string{"alice@example.org"}) {
		t.Errorf("destinations %q", sent.Destinations)
	}
	if !bytes.Equal(bodyOf(t, sent.Raw), bodyOf(t, src)) {
		t.Error("body changed in forwarding")
	}
	got, want := parts(t, sent.Raw), parts(t, src)
	if len(got) != len(want) || len(got) < 2 {
		t.Fatalf("parts: got %d want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("part %d differs", i)
		}
	}
	hdr, err := mail.CreateReader(bytes.NewReader(sent.Raw))
	if err != nil {
		t.Fatal(err)
	}
	from, err := hdr.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != "shop@relay.example.com" || !strings.Contains(from[0].Name, "Dora") {
		t.Errorf("From = %v (%v)", from, err)
	}
	replyTo, err := hdr.Header.AddressList("Reply-To")
	if err != nil || len(replyTo) != 1 || replyTo[0].Address != "dora@example.org" {
		t.Errorf("Reply-To = %v (%v)", replyTo, err)
	}
	if s, _ := hdr.Header.Subject(); s != "Invoice attached" {
		t.Errorf("Subject = %q", s)
	}
	// Finished: the S3 object is gone and the outcome counted.
	waitFor(t, "S3 object deleted", func() bool { return !h.S3.Has(testBucket, "inbound/ses-1") })
	waitFor(t, "forward counted", func() bool {
		return testutil.ToFloat64(h.Relay.Metrics.Messages.WithLabelValues("forwarded", "ok")) == 1
	})
}

func TestStatusCodes(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.SNSMaxBodyBytes = 8 << 10 })
	note := receivedS3(h, "ses-x", "shop@relay.example.com")
	good := h.Signer.Notification(testTopic, "sns-ok", "Amazon SES Email Receipt Notification", note, "1")
	forged := bytes.Replace(good, []byte("sns-ok"), []byte("sns-forged"), 1)
	otherTopic := h.Signer.Notification("arn:aws:sns:us-east-1:123456789012:other", "sns-t", "", note, "2")

	tests := []struct {
		name string
		body []byte
		want int
	}{
		{"signed v1", good, 200},
		{"duplicate", good, 200},
		{"signed v2", h.Signer.Notification(testTopic, "sns-v2", "", note, "2"), 200},
		{"malformed json", []byte(`{"Type":`), 400},
		{"unknown type", []byte(`{"Type":"Party","MessageId":"x","TopicArn":"` + testTopic + `"}`), 400},
		{"forged signature", forged, 403},
		{"topic not allowed", otherTopic, 403},
		{"subscribe url elsewhere", h.Signer.SubscriptionConfirmation(testTopic, "https://evil.example.com/confirm"), 403},
		{"too large", bytes.Repeat([]byte("x"), 9<<10), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.Post(tt.body); got != tt.want {
				t.Fatalf("answered %d, want %d", got, tt.want)
			}
		})
	}
	// The duplicate was stored once: two distinct notifications accepted.
	if n := testutil.ToFloat64(h.Relay.Metrics.InboundRequests.WithLabelValues("Notification", "200")); n != 3 {
		t.Errorf("200s counted %v, want 3", n)
	}
}

func TestFullSpoolAnswers503(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.SpoolMaxMessages = 2 })
	h.SES.Fail(fakes.ErrThrottling, fakes.ErrThrottling, fakes.ErrThrottling, fakes.ErrThrottling, fakes.ErrThrottling, fakes.ErrThrottling)
	h.Deliver("a", "ses-a", testMail(1), "shop@relay.example.com")
	h.Deliver("b", "ses-b", testMail(2), "shop@relay.example.com")
	n := h.Received("ses-c", "shop@relay.example.com")
	n.Receipt.Action.ObjectKey = "k"
	body := h.Signer.Notification(testTopic, "c", "", string(n.JSON()), "2")
	resp, err := http.Post("http://"+h.Relay.InboundAddr+"/sns", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("full spool answered %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	resp, err = http.Get("http://" + h.Relay.HealthAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readyz with a full spool = %d, want 503", resp.StatusCode)
	}
	// Once SES recovers the spool drains and intake resumes.
	h.WaitSent(2)
	waitFor(t, "spool drained", func() bool { return !h.Relay.Spool.Full() })
	if code := h.Post(body); code != 200 {
		t.Errorf("after draining answered %d", code)
	}
}

func TestDuplicateForwardedOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.Deliver("dup", "ses-dup", testMail(1), "shop@relay.example.com")
	h.WaitSent(1)
	waitFor(t, "finished", func() bool { return h.Relay.Spool.Stats().Messages == 0 })
	// SNS redelivers after the mail went out: acknowledged, not sent again.
	body := h.Signer.Notification(testTopic, "dup", "", receivedS3(h, "ses-dup", "shop@relay.example.com"), "2")
	for range 3 {
		if code := h.Post(body); code != 200 {
			t.Fatalf("redelivery answered %d", code)
		}
	}
	time.Sleep(200 * time.Millisecond) // give a wrong second forward the chance to happen
	if n := len(h.SES.Sent()); n != 1 {
		t.Fatalf("forwarded %d times, want once", n)
	}
}

func TestRestartResumesSpool(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.RetryMin, c.RetryMax = 10*time.Second, 10*time.Second })
	const n = 20
	// SES fails everything: entries stay in the spool awaiting retry.
	// (Not Throttling: SES is up then, and the pacer, not the breaker,
	// slows down.)
	errs := make([]error, n)
	for i := range errs {
		errs[i] = fakes.ErrInternal
	}
	h.SES.Fail(errs...)
	for i := range n {
		h.Deliver(fmt.Sprintf("r%d", i), fmt.Sprintf("ses-r%d", i), testMail(i), "shop@relay.example.com", "news@relay.example.com")
	}
	// SES fails until its breaker opens; the pool then pauses and leaves
	// the rest untouched in the spool.
	waitFor(t, "SES refusing", func() bool { return countOutcome(t, h, "retried") >= 1 })
	h.Shutdown()
	h.SES.ClearFailures()
	if h.Relay.Spool.Stats().Messages != n {
		t.Fatalf("spool holds %d entries after shutdown, want %d", h.Relay.Spool.Stats().Messages, n)
	}

	// A restart picks every entry up again; with a short retry now they all go.
	h.Config.RetryMin, h.Config.RetryMax = 50*time.Millisecond, 100*time.Millisecond
	h.Restart()
	// Every notification fans out to two aliases: shop (1 copy) and news (1 copy).
	h.WaitSent(2 * n)
	waitFor(t, "spool empty", func() bool { return h.Relay.Spool.Stats().Messages == 0 })
	time.Sleep(100 * time.Millisecond)
	sent := h.SES.Sent()
	seen := map[string]int{}
	for _, s := range sent {
		m, err := mail.CreateReader(bytes.NewReader(s.Raw))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := m.Header.MessageID()
		from, _ := m.Header.AddressList("From")
		seen[id+" "+from[0].Address]++
	}
	if len(seen) != 2*n {
		t.Errorf("%d distinct copies forwarded, want %d", len(seen), 2*n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s forwarded %d times", k, c)
		}
	}
}

func TestTransientS3FailureRetried(t *testing.T) {
	h := newHarness(t, nil)
	h.S3.Faults().Next(3, fakes.FaultInternalError) // SDK makes ≤2 attempts: the first try fails, a retry too
	h.Deliver("t1", "ses-t1", testMail(1), "shop@relay.example.com")
	h.WaitSent(1)
	if got := testutil.ToFloat64(h.Relay.Metrics.Messages.WithLabelValues("forwarded", "ok")); got != 1 {
		waitFor(t, "forward counted", func() bool {
			return testutil.ToFloat64(h.Relay.Metrics.Messages.WithLabelValues("forwarded", "ok")) == 1
		})
	}
	if countOutcome(t, h, "retried") < 1 {
		t.Errorf("no retry counted; metrics:\n%s", gatherMessages(t, h))
	}
}

// countOutcome sums mailrelay_messages_total over reasons for one outcome.
func countOutcome(t *testing.T, h *harness, outcome string) float64 {
	mfs, err := h.Relay.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "mailrelay_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func gatherMessages(t *testing.T, h *harness) string {
	mfs, err := h.Relay.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if mf.GetName() == "mailrelay_messages_total" {
			for _, m := range mf.GetMetric() {
				fmt.Fprintf(&b, "%v %v\n", m.GetLabel(), m.GetCounter().GetValue())
			}
		}
	}
	return b.String()
}

func TestPermanentFailureDeadLetteredAndRedriven(t *testing.T) {
	h := newHarness(t, nil)
	// The notification points at an object that is not (yet) in S3.
	body := h.Signer.Notification(testTopic, "p1", "", receivedS3(h, "ses-p1", "shop@relay.example.com"), "2")
	if code := h.Post(body); code != 200 {
		t.Fatalf("answered %d", code)
	}
	c := &admin.Client{BaseURL: "http://" + h.Relay.AdminAddr}
	ctx := context.Background()
	var items []admin.Item
	waitFor(t, "dead letter", func() bool {
		var err error
		items, err = c.List(ctx, 10)
		return err == nil && len(items) == 1 && h.Relay.Spool.Stats().Messages == 0
	})
	if items[0].ID != "p1" || !strings.HasPrefix(items[0].Reason, "s3_not_found") {
		t.Fatalf("dead letter %+v", items[0])
	}
	if len(h.SES.Sent()) != 0 {
		t.Fatal("sent something for a missing mail")
	}
	if st := h.Relay.Spool.Stats(); st.Messages != 0 || st.DeadLetters != 1 {
		t.Fatalf("spool stats after dead-lettering: %+v", st)
	}
	// The operator fixes the cause and redrives.
	if err := h.S3.Put(testBucket, "inbound/ses-p1", testMail(7)); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Redrive(ctx, []string{"p1"}, false); err != nil || r.Redriven != 1 {
		t.Fatalf("redrive = %+v, %v", r, err)
	}
	h.WaitSent(1)
	if items, err := c.List(ctx, 10); err != nil || len(items) != 0 {
		t.Errorf("after redrive: %v, %v", items, err)
	}
}

func TestHealthWhileDependenciesHang(t *testing.T) {
	h := newHarness(t, nil)
	h.S3.Faults().Next(100, fakes.Hang(3*time.Second))
	for i := range 8 {
		h.Deliver(fmt.Sprintf("h%d", i), fmt.Sprintf("ses-h%d", i), testMail(i), "shop@relay.example.com")
	}
	// Workers are stuck on S3; health and intake still answer at once.
	for _, path := range []string{"/livez", "/readyz"} {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + h.Relay.HealthAddr + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
	}
	h.Deliver("h-late", "ses-h-late", testMail(99), "shop@relay.example.com")
	h.S3.Faults().Clear()
}
