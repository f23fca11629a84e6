package relay_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
)

// TestRepliesThroughRelay: with a reply key, a forwarded mail's Reply-To is
// a reply address; the destination's answer to it reaches the original
// sender from the alias with the destination's address nowhere in it; a
// stranger's mail and a tampered address are dropped and counted.
func TestRepliesThroughRelay(t *testing.T) {
	h := newHarness(t, func(c *config.Config) {
		c.ReplyKey = strings.Repeat("k", 32)
		c.SPFAction = "tag"
		c.SubjectTag = "[CHECK SPF]"
	})
	original := []byte("From: Newsletter <news@sender.example>\r\nTo: shop@relay.example.com\r\nSubject: Offer\r\nMessage-ID: <o1@sender.example>\r\n\r\nHello!\r\n")
	h.Deliver("sns-1", "ses-1", original, "shop@relay.example.com")
	sent := h.WaitSent(1)
	fwd, err := mail.ReadMessage(bytes.NewReader(sent[0].Raw))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := mail.ParseAddress(fwd.Header.Get("Reply-To"))
	if err != nil || !strings.HasPrefix(rt.Address, "r1-") || !strings.HasSuffix(rt.Address, "@relay.example.com") {
		t.Fatalf("Reply-To %q (%v) is no reply address", fwd.Header.Get("Reply-To"), err)
	}
	if fwd.Header.Get("X-Original-From") != "news@sender.example" || fwd.Header.Get("X-Mailrelay-Alias") != "shop@relay.example.com" {
		t.Errorf("annotations: %v", fwd.Header)
	}

	dest := "alice@example.org" // shop@'s destination in the harness's aliases
	answer := []byte("From: Alice <" + dest + ">\r\nTo: " + fwd.Header.Get("Reply-To") + "\r\nSubject: Re: Offer\r\nIn-Reply-To: <o1@sender.example>\r\n\r\nYes please.\r\n\r\nAlice <" + dest + "> wrote:\r\n")
	deliverFrom := func(snsID, sesID, source, rcpt string, raw []byte, spfFail bool) {
		t.Helper()
		if err := h.Env.Put(sesID, raw); err != nil {
			t.Fatal(err)
		}
		n := h.Env.Received(sesID, rcpt)
		n.Mail.Source = source
		if spfFail {
			n.Receipt.SPFVerdict.Status = "FAIL"
		}
		if code := h.Post(h.Env.Sign(snsID, n)); code != 200 {
			t.Fatalf("%s answered %d", snsID, code)
		}
	}
	local, domain, _ := strings.Cut(rt.Address, "@")
	last := "a"
	if strings.HasSuffix(local, "a") {
		last = "b"
	}
	tampered := local[:len(local)-1] + last + "@" + domain
	deliverFrom("sns-2", "ses-2", "mallory@example.net", rt.Address, answer, false)
	deliverFrom("sns-3", "ses-3", dest, tampered, answer, false)
	deliverFrom("sns-4", "ses-4", dest, strings.ToUpper(rt.Address), answer, true)

	sent = h.WaitSent(2)
	m := h.Relay.Metrics.Messages
	relaytest.WaitFor(t, "the reply counted, the stranger's and the tampered mail dropped", func() bool {
		return testutil.ToFloat64(m.WithLabelValues("dropped", "reply_not_allowed")) == 1 &&
			testutil.ToFloat64(m.WithLabelValues("dropped", "reply_invalid")) == 1 &&
			testutil.ToFloat64(m.WithLabelValues("forwarded", "reply")) == 1
	})
	if got := len(h.SES.Sent()); got != 2 {
		t.Fatalf("%d sends, want 2", got)
	}
	r := sent[1]
	if r.Source != "shop@relay.example.com" || len(r.Destinations) != 1 || r.Destinations[0] != "news@sender.example" {
		t.Errorf("reply sent from %q to %q", r.Source, r.Destinations)
	}
	if bytes.Contains(bytes.ToLower(r.Raw), []byte(dest)) {
		t.Errorf("the destination's address went out:\n%s", r.Raw)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(r.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("From") != "<shop@relay.example.com>" || msg.Header.Get("To") != "<news@sender.example>" || msg.Header.Get("Subject") != "Re: Offer" {
		t.Errorf("reply header %v", msg.Header)
	}
}
