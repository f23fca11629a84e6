package mailproc

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
	"github.com/mailrelay/mailrelay/mailproc/rewrite"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// withHeaders is mail.eml with fields put on top and its Return-Path
// replaced by rp (when not empty).
func withHeaders(rp string, fields ...string) []byte {
	raw := mailtest.ReceivedMail()
	if rp != "" {
		raw = bytes.Replace(raw, []byte("Return-Path: <alice@sender.example>"), []byte("Return-Path: "+rp), 1)
	}
	var b bytes.Buffer
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	b.Write(raw)
	return b.Bytes()
}

const dsnContentType = "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"b1\""

// resolverFunc is a Resolver of a test.
type resolverFunc func(string) (aliases.Route, error)

func (f resolverFunc) Resolve(_ context.Context, a string) (aliases.Route, error) { return f(a) }

const catchAllYAML = aliasYAML + `  - address: "@relay.example.com"
    forward_to: [ops@example.org]
`

func TestLoopRulesAndInvalidRecipients(t *testing.T) {
	catchAll, err := aliases.Parse([]byte(catchAllYAML))
	if err != nil {
		t.Fatal(err)
	}
	useCatchAll := func(c *Config) { c.Aliases = catchAll }
	source := func(src string, headers bool) func(n *sesnotify.Notification) {
		return func(n *sesnotify.Notification) {
			n.Mail.Source = src
			if !headers {
				n.Mail.Headers = nil
			}
		}
	}
	tests := []struct {
		name    string
		mut     func(n *sesnotify.Notification)
		rcpts   []string
		raw     []byte // the S3 object; mail.eml when nil
		cfg     func(c *Config)
		settle  string // complete or dead
		reason  string // dead-letter reason prefix
		sent    []string
		gets    int
		deletes int
		counts  map[string]float64
	}{
		{name: "ordinary mail forwarded with the marker", settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1}},
		{name: "mail.source <> dropped before the fetch", mut: source("<>", true), settle: "complete", deletes: 1,
			counts: map[string]float64{"dropped/empty_sender": 1}},
		{name: "mail.source empty in an SES notification dropped", mut: source("", true), settle: "complete", deletes: 1,
			counts: map[string]float64{"dropped/empty_sender": 1}},
		{name: "mail.source unknown (built notification) and a real Return-Path forwarded", mut: source("", false),
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1, counts: map[string]float64{"forwarded/ok": 1}},
		{name: "Return-Path <> in the stored mail dropped", mut: source("", false), raw: withHeaders("<>"),
			settle: "complete", gets: 1, deletes: 1, counts: map[string]float64{"dropped/empty_sender": 1}},
		{name: "Auto-Submitted auto-replied dropped", raw: withHeaders("", "Auto-Submitted: auto-replied"),
			settle: "complete", gets: 1, deletes: 1, counts: map[string]float64{"dropped/auto_submitted": 1}},
		{name: "Auto-Submitted no forwarded", raw: withHeaders("", "Auto-Submitted: No"),
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1, counts: map[string]float64{"forwarded/ok": 1}},
		{name: "delivery report dropped", raw: bytes.Replace(withHeaders(""), []byte("Content-Type: text/plain; charset=UTF-8"), []byte(dsnContentType), 1),
			settle: "complete", gets: 1, deletes: 1, counts: map[string]float64{"dropped/delivery_report": 1}},
		{name: "our loop marker dropped", raw: withHeaders("", "X-Mailrelay-Loop: Relay.Example.com"),
			settle: "complete", gets: 1, deletes: 1, counts: map[string]float64{"dropped/loop": 1}},
		{name: "another relay's marker forwarded", raw: withHeaders("", "X-Mailrelay-Loop: other.example"),
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1, counts: map[string]float64{"forwarded/ok": 1}},

		{name: "catch-all hit on a quoted local part dropped at once", rcpts: []string{`"a b"@relay.example.com`}, cfg: useCatchAll,
			settle: "complete", deletes: 1, counts: map[string]float64{"dropped/invalid_recipient": 1}},
		{name: "invalid recipient dropped even under DeadLetterUnknown", rcpts: []string{"a b@relay.example.com"},
			cfg: func(c *Config) { useCatchAll(c); c.Policy.DeadLetterUnknown = true }, settle: "complete", deletes: 1,
			counts: map[string]float64{"dropped/invalid_recipient": 1}},
		{name: "invalid and valid recipient: the valid one forwarded", rcpts: []string{`"a b"@relay.example.com`, "shop@relay.example.com"}, cfg: useCatchAll,
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1, "dropped/invalid_recipient": 1}},
		{name: "resolver gives an invalid alias", cfg: func(c *Config) {
			c.Aliases = resolverFunc(func(string) (aliases.Route, error) {
				return aliases.Route{Alias: `"a b"@relay.example.com`, ForwardTo: []string{"x@example.org"}}, nil
			})
		}, settle: "complete", deletes: 1, counts: map[string]float64{"dropped/invalid_recipient": 1}},
		{name: "resolver gives only invalid destinations", cfg: func(c *Config) {
			c.Aliases = resolverFunc(func(string) (aliases.Route, error) {
				return aliases.Route{Alias: "shop@relay.example.com", ForwardTo: []string{"a b@example.org", "Bob <b@example.org>", "jörg@example.org", ""}}, nil
			})
		}, settle: "complete", deletes: 1, counts: map[string]float64{"dropped/invalid_recipient": 1}},
		{name: "an invalid destination left out", cfg: func(c *Config) {
			c.Aliases = resolverFunc(func(string) (aliases.Route, error) {
				return aliases.Route{Alias: "shop@relay.example.com", ForwardTo: []string{"a b@example.org", "bob@example.org"}}, nil
			})
		}, settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1, counts: map[string]float64{"forwarded/ok": 1}},
		// Reconcile takes recipients from "for <rcpt>" clauses: one on
		// another domain is dropped by the alias resolver, never sent to.
		{name: "recipient on another domain not trusted", rcpts: []string{"victim@elsewhere.example", "shop@relay.example.com"},
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1, "dropped/not_our_domain": 1}},

		{name: "reconciled mail held under HoldUnverified", mut: reconciled, cfg: func(c *Config) { c.Policy.HoldUnverified = true },
			settle: "dead", reason: "unverified", counts: map[string]float64{"dead_lettered/unverified": 1}},
		{name: "reconciled mail forwarded by default", mut: reconciled,
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1, counts: map[string]float64{"forwarded/ok": 1}},
		{name: "HoldUnverified follows the policy: virus check off", mut: func(n *sesnotify.Notification) {
			n.Receipt.VirusVerdict.Status = sesnotify.StatusProcessingFail
		}, cfg: func(c *Config) { c.Policy.HoldUnverified, c.Policy.DropVirus = true, false },
			settle: "complete", sent: []string{"shop@relay.example.com"}, gets: 1, deletes: 1, counts: map[string]float64{"forwarded/ok": 1}},
		{name: "a FAIL verdict still drops under HoldUnverified", mut: func(n *sesnotify.Notification) {
			reconciled(n)
			n.Receipt.SpamVerdict.Status = sesnotify.StatusFail
		}, cfg: func(c *Config) { c.Policy.HoldUnverified = true }, settle: "complete", deletes: 1,
			counts: map[string]float64{"dropped/spam": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			if tc.raw != nil {
				e.objects.put(testBucket, testKey, tc.raw)
			}
			e.run(context.Background(), newEntry("sns-1", s3Notification(t, tc.mut, tc.rcpts...)))
			completed, retried, dead, _ := e.q.outcomes()
			switch {
			case retried != 0:
				t.Fatalf("retried: %+v", e.q.retries)
			case tc.settle == "complete" && completed != 1, tc.settle == "dead" && dead != 1:
				t.Fatalf("completed %d, dead %d; want %s (dead letters %+v)", completed, dead, tc.settle, e.q.dead)
			case tc.settle == "dead" && !strings.HasPrefix(e.q.dead[0].reason, tc.reason+": "):
				t.Errorf("dead-letter reason %q, want %q", e.q.dead[0].reason, tc.reason)
			}
			sent := e.sender.sent()
			if len(sent) != len(tc.sent) {
				t.Fatalf("sent %d copies, want %d", len(sent), len(tc.sent))
			}
			for i, c := range sent {
				if c.from != tc.sent[i] {
					t.Errorf("copy %d from %q, want %q", i, c.from, tc.sent[i])
				}
				f, err := rewrite.Examine(c.raw)
				if err != nil || !f.HasLoopMarker("relay.example.com") {
					t.Errorf("copy %d carries no loop marker (%v): %.200q", i, err, c.raw)
				}
				for _, to := range c.to {
					if !validAddress(to) {
						t.Errorf("sent to invalid %q", to)
					}
				}
			}
			gets, deletes := e.objects.counts()
			if gets != tc.gets || deletes != tc.deletes {
				t.Errorf("store: %d gets, %d deletes; want %d, %d", gets, deletes, tc.gets, tc.deletes)
			}
			if got := messageCounts(t, e.metrics); !mapsEqual(got, tc.counts) {
				t.Errorf("mailrelay_messages_total %v, want %v", got, tc.counts)
			}
		})
	}
}

// reconciled sets every verdict as reconcile does.
func reconciled(n *sesnotify.Notification) {
	pf := sesnotify.Verdict{Status: sesnotify.StatusProcessingFail}
	r := n.Receipt
	r.SpamVerdict, r.VirusVerdict, r.SPFVerdict, r.DKIMVerdict, r.DMARCVerdict = pf, pf, pf, pf, pf
}

// TestForwardedCopyComesBack: a destination that forwards back to the alias
// (or a bounce quoting the copy's header on top) brings the relay its own
// copy: it is dropped with reason loop, not forwarded a second time.
func TestForwardedCopyComesBack(t *testing.T) {
	e := newEnv(t, nil)
	e.run(context.Background(), newEntry("sns-1", s3Notification(t, nil)))
	sent := e.sender.sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d copies", len(sent))
	}
	// The destination's server forwards it back: it arrives with a new
	// Return-Path and Received on top.
	back := append([]byte("Return-Path: <alice@example.org>\r\nReceived: from mx.example.org by inbound-smtp for shop@relay.example.com; Fri, 01 Mar 2024 10:13:00 +0000\r\n"), sent[0].raw...)
	e.objects.put(testBucket, testKey, back)
	e.run(context.Background(), newEntry("sns-2", s3Notification(t, nil)))
	if n := len(e.sender.sent()); n != 1 {
		t.Fatalf("the copy came back and was forwarded again (%d sends)", n)
	}
	if got := messageCounts(t, e.metrics); got["dropped/loop"] != 1 {
		t.Errorf("mailrelay_messages_total %v, want dropped/loop 1", got)
	}
}

func TestValidAddress(t *testing.T) {
	for a, want := range map[string]bool{
		"a@example.org": true, "a.b+c@sub.example.org": true, "o'brien@example.org": true,
		"": false, "a b@example.org": false, `"a b"@example.org`: false, "<a@example.org>": false,
		"A <a@example.org>": false, "a@": false, "@example.org": false, "jörg@example.org": false,
		"a@b@example.org": false, "a\r\n@example.org": false, strings.Repeat("a", 65) + "@example.org": false,
		"a..b@example.org": false, "a@example.org,b@example.org": false,
	} {
		if got := validAddress(a); got != want {
			t.Errorf("validAddress(%q) = %v, want %v", a, got, want)
		}
	}
}
