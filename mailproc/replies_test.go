package mailproc

import (
	"bytes"
	"context"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/reply"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

func TestVerdictActions(t *testing.T) {
	fail := sesnotify.Verdict{Status: "FAIL"}
	procFailed := sesnotify.Verdict{Status: sesnotify.StatusProcessingFail}
	spam := func(r *sesnotify.Receipt) { r.SpamVerdict = fail }
	virus := func(r *sesnotify.Receipt) { r.VirusVerdict = fail }
	spf := func(r *sesnotify.Receipt) { r.SPFVerdict = fail }
	dkim := func(r *sesnotify.Receipt) { r.DKIMVerdict = fail }
	dmarc := func(policy string) func(r *sesnotify.Receipt) {
		return func(r *sesnotify.Receipt) { r.DMARCVerdict, r.DMARCPolicy = fail, policy }
	}
	for _, tc := range []struct {
		name    string
		verdict func(r *sesnotify.Receipt)
		policy  func(p *Policy)
		count   string // outcome/reason
		subject string // prefix of the forwarded Subject, "" when dropped
		dead    bool   // dead-lettered (unverified)
	}{
		{"defaults: virus dropped", virus, nil, "dropped/virus", "", false},
		{"defaults: spam dropped", spam, nil, "dropped/spam", "", false},
		{"defaults: DMARC reject dropped", dmarc("reject"), nil, "dropped/dmarc_reject", "", false},
		{"defaults: DMARC quarantine tagged", dmarc("quarantine"), nil, "forwarded/dmarc_quarantine", "[SPAM] Order", false},
		{"defaults: SPF FAIL forwarded", spf, nil, "forwarded/ok", "Order", false},
		{"defaults: DKIM FAIL forwarded", dkim, nil, "forwarded/ok", "Order", false},
		{"spam tagged with own tag", spam, func(p *Policy) { p.SpamAction, p.SubjectTag = ActionTag, "[JUNK]" }, "forwarded/spam", "[JUNK] Order", false},
		{"spam action wins over DropSpam off", spam, func(p *Policy) { p.DropSpam, p.SpamAction = false, ActionDrop }, "dropped/spam", "", false},
		{"DropSpam off forwards", spam, func(p *Policy) { p.DropSpam = false }, "forwarded/ok", "Order", false},
		{"DropVirus off forwards", virus, func(p *Policy) { p.DropVirus = false }, "forwarded/ok", "Order", false},
		{"virus forwarded by action", virus, func(p *Policy) { p.VirusAction = ActionForward }, "forwarded/ok", "Order", false},
		{"DMARC quarantine dropped", dmarc("quarantine"), func(p *Policy) { p.DMARCQuarantineAction = ActionDrop }, "dropped/dmarc_quarantine", "", false},
		{"DMARC quarantine forwarded", dmarc("quarantine"), func(p *Policy) { p.DMARCQuarantineAction = ActionForward }, "forwarded/ok", "Order", false},
		{"DMARC reject tagged", dmarc("reject"), func(p *Policy) { p.DMARCRejectAction = ActionTag }, "forwarded/dmarc_reject", "[SPAM] Order", false},
		{"SPF dropped", spf, func(p *Policy) { p.SPFAction = ActionDrop }, "dropped/spf", "", false},
		{"DKIM tagged", dkim, func(p *Policy) { p.DKIMAction = ActionTag }, "forwarded/dkim", "[SPAM] Order", false},
		{"drop wins over an earlier tag", func(r *sesnotify.Receipt) { spam(r); dkim(r) }, func(p *Policy) { p.SpamAction, p.DKIMAction = ActionTag, ActionDrop }, "dropped/dkim", "", false},
		{"two tags, one prefix", func(r *sesnotify.Receipt) { spf(r); dkim(r) }, func(p *Policy) { p.SPFAction, p.DKIMAction = ActionTag, ActionTag }, "forwarded/spf", "[SPAM] Order", false},
		{"unverified SPF held when dropped", func(r *sesnotify.Receipt) { r.SPFVerdict = procFailed }, func(p *Policy) { p.SPFAction, p.HoldUnverified = ActionDrop, true }, "dead_lettered/unverified", "", true},
		{"unverified SPF forwarded when tagged", func(r *sesnotify.Receipt) { r.SPFVerdict = procFailed }, func(p *Policy) { p.SPFAction, p.HoldUnverified = ActionTag, true }, "forwarded/ok", "Order", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.policy != nil {
					tc.policy(&c.Policy)
				}
			})
			e.run(context.Background(), newEntry("n1", s3Notification(t, func(n *sesnotify.Notification) { tc.verdict(n.Receipt) })))
			if got := messageCounts(t, e.metrics); got[tc.count] != 1 || len(got) != 1 {
				t.Errorf("counts %v, want %s", got, tc.count)
			}
			sent := e.sender.sent()
			if tc.subject == "" {
				if len(sent) != 0 {
					t.Errorf("%d copies sent", len(sent))
				}
				return
			}
			if len(sent) != 1 {
				t.Fatalf("%d copies sent", len(sent))
			}
			msg, err := mail.ReadMessage(bytes.NewReader(sent[0].raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := msg.Header.Get("Subject"); !strings.HasPrefix(got, tc.subject) {
				t.Errorf("Subject %q, want prefix %q", got, tc.subject)
			}
		})
	}
	if _, err := ParseAction("bounce"); err == nil {
		t.Error("ParseAction accepted bounce")
	}
	if a, err := ParseAction(" Tag "); err != nil || a != ActionTag {
		t.Errorf("ParseAction(Tag) = %q, %v", a, err)
	}
}

var replyKey = []byte("a test reply key of 32 bytes....")

func withReplies(t *testing.T) func(c *Config) {
	return func(c *Config) {
		codec, err := reply.New(replyKey, nil, 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c.Replies = codec
	}
}

// A forwarded copy's Reply-To is a reply address that leads back to the
// original sender through the alias, and it names the original sender and
// the alias for filters.
func TestForwardWithReplyAddress(t *testing.T) {
	e := newEnv(t, withReplies(t))
	e.run(context.Background(), newEntry("n1", s3Notification(t, nil)))
	sent := e.sender.sent()
	if len(sent) != 1 {
		t.Fatalf("%d copies", len(sent))
	}
	msg, err := mail.ReadMessage(bytes.NewReader(sent[0].raw))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := mail.ParseAddress(msg.Header.Get("Reply-To"))
	if err != nil {
		t.Fatalf("Reply-To %q: %v", msg.Header.Get("Reply-To"), err)
	}
	a, err := e.p.cfg.Replies.Decode(rt.Address, testNow)
	if err != nil || a.Alias != "shop@relay.example.com" || a.Sender != "alice@sender.example" {
		t.Errorf("Reply-To %q decodes to %+v, %v", rt.Address, a, err)
	}
	if got := msg.Header.Get("X-Original-From"); got != "alice@sender.example" {
		t.Errorf("X-Original-From %q", got)
	}
	if got := msg.Header.Get("X-Mailrelay-Alias"); got != "shop@relay.example.com" {
		t.Errorf("X-Mailrelay-Alias %q", got)
	}
	if got := messageCounts(t, e.metrics); got["forwarded/ok"] != 1 {
		t.Errorf("counts %v", got)
	}
}

func TestReplies(t *testing.T) {
	codec, err := reply.New(replyKey, nil, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good, err := codec.Encode("shop@relay.example.com", "alice@sender.example", testNow.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := codec.Encode("shop@relay.example.com", "alice@sender.example", testNow.Add(-40*24*time.Hour))
	gone, _ := codec.Encode("gone@relay.example.com", "alice@sender.example", testNow)
	local, domain, _ := strings.Cut(good, "@")
	tampered := local[:len(local)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(local, "a")] + "@" + domain
	replyMail := []byte("From: Bob <bob@example.org>\r\nTo: <" + good + ">\r\nCc: bob@example.org\r\nSubject: Re: Order\r\nReceived: from laptop (198.51.100.9)\r\n\r\nThanks!\r\n\r\nBob <bob@example.org> wrote:\r\n> Hello\r\n")
	for _, tc := range []struct {
		name, rcpt, source string
		replies            bool
		count              string
	}{
		{"from a destination: sent", good, "bob@example.org", true, "forwarded/reply"},
		{"destination compared case-insensitively", good, "<Bob@Example.org>", true, "forwarded/reply"},
		{"from a stranger", good, "mallory@example.net", true, "dropped/reply_not_allowed"},
		{"from a destination of another alias", good, "carol@example.org", true, "dropped/reply_not_allowed"},
		{"no envelope sender known", good, "", true, "dropped/reply_not_allowed"},
		{"alias gone", gone, "bob@example.org", true, "dropped/reply_not_allowed"},
		{"tampered", tampered, "bob@example.org", true, "dropped/reply_invalid"},
		{"expired", old, "bob@example.org", true, "dropped/reply_expired"},
		{"replies off: an unknown alias", good, "bob@example.org", false, "dropped/unknown_alias"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.replies {
					c.Replies = codec
				}
			})
			e.objects.put(testBucket, testKey, replyMail)
			payload := s3Notification(t, func(n *sesnotify.Notification) {
				n.Mail.Source = tc.source
				n.Mail.Headers = nil // no header list: "" is unknown, not the null sender
			}, tc.rcpt)
			e.run(context.Background(), newEntry("n1", payload))
			if got := messageCounts(t, e.metrics); got[tc.count] != 1 || len(got) != 1 {
				t.Fatalf("counts %v, want %s", got, tc.count)
			}
			sent := e.sender.sent()
			if tc.count != "forwarded/reply" {
				if len(sent) != 0 {
					t.Errorf("%d copies sent", len(sent))
				}
				return
			}
			if len(sent) != 1 || sent[0].from != "shop@relay.example.com" || len(sent[0].to) != 1 || sent[0].to[0] != "alice@sender.example" {
				t.Fatalf("sent %+v", sent)
			}
			if bytes.Contains(bytes.ToLower(sent[0].raw), []byte("bob@example.org")) {
				t.Errorf("the destination's address went out:\n%s", sent[0].raw)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(sent[0].raw))
			if err != nil {
				t.Fatal(err)
			}
			if msg.Header.Get("From") != "<shop@relay.example.com>" || msg.Header.Get("To") != "<alice@sender.example>" || msg.Header.Get("Subject") != "Re: Order" {
				t.Errorf("header %v", msg.Header)
			}
		})
	}
}
