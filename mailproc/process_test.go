package mailproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/telemetry"
)

// copyWant is one forwarded copy a test expects.
type copyWant struct {
	alias string
	to    []string
}

var (
	shopCopy  = copyWant{"shop@relay.example.com", shopTo}
	salesCopy = copyWant{"sales@relay.example.com", salesTo}
)

// checkCopy checks a sent copy of mail.eml: envelope from and destinations,
// From header is the alias, Reply-To leads back to the original sender,
// DKIM-Signature is gone, and the body is byte-identical to the source's.
func checkCopy(t *testing.T, c sendCall, want copyWant, src []byte) {
	t.Helper()
	if c.from != want.alias {
		t.Errorf("sent from %q, want %q", c.from, want.alias)
	}
	to := slices.Sorted(slices.Values(c.to))
	if !slices.Equal(to, slices.Sorted(slices.Values(want.to))) {
		t.Errorf("sent to %q, want %q", c.to, want.to)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(c.raw))
	if err != nil {
		t.Fatalf("sent copy does not parse: %v\n%s", err, c.raw)
	}
	from, err := mail.ParseAddress(msg.Header.Get("From"))
	if err != nil {
		t.Fatalf("From of sent copy: %v", err)
	}
	if from.Address != want.alias {
		t.Errorf("From address %q, want %q", from.Address, want.alias)
	}
	if rt := msg.Header.Get("Reply-To"); !strings.Contains(rt, "alice@sender.example") {
		t.Errorf("Reply-To %q does not lead to the original sender", rt)
	}
	if msg.Header.Get("DKIM-Signature") != "" {
		t.Errorf("DKIM-Signature kept in the forwarded copy")
	}
	if got, want := bodyOf(t, c.raw), bodyOf(t, src); !bytes.Equal(got, want) {
		t.Errorf("body of the sent copy differs from the source's:\n got %q\nwant %q", got, want)
	}
}

// bodyOf returns what follows the header separator (CRLF mail).
func bodyOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	_, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no header separator in %q", raw)
	}
	return body
}

func TestHandle(t *testing.T) {
	mailEML := mailtest.ReceivedMail()
	transientS3 := failure.Transient("s3_timeout", errors.New("GetObject: deadline exceeded"))
	permanentS3 := failure.Permanent("s3_not_found", errors.New("NoSuchKey"))

	verdicts := func(spam, virus, dmarc, dmarcPolicy string) []byte {
		return s3Notification(t, func(n *sesnotify.Notification) {
			r := n.Receipt
			r.SpamVerdict.Status, r.VirusVerdict.Status, r.DMARCVerdict.Status = spam, virus, dmarc
			r.DMARCPolicy = dmarcPolicy
		})
	}

	tests := []struct {
		name    string
		payload []byte
		kind    string // entry Kind, "Received" when empty
		cfg     func(c *Config)
		setup   func(e *env)

		settle  string // complete, retry, dead or release
		reason  string // reason prefix of the retry or dead letter
		copies  []copyWant
		gets    int // ObjectStore.Get calls
		deletes int // ObjectStore.Delete calls
		marks   int // MarkSent calls (default: len(copies))
		counts  map[string]float64
	}{
		{
			name:    "forwarded from S3",
			payload: s3Notification(t, nil),
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "inline content BASE64",
			payload: notification(t, "received_sns_base64.json", nil),
			settle:  "complete", copies: []copyWant{shopCopy},
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "inline content UTF8",
			payload: notification(t, "received_sns_utf8.json", nil),
			settle:  "complete", copies: []copyWant{shopCopy},
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name: "inline content without encoding is UTF8",
			payload: notification(t, "received_sns_utf8.json", func(n *sesnotify.Notification) {
				n.Receipt.Action.Encoding = ""
			}),
			settle: "complete", copies: []copyWant{shopCopy},
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "plus address resolves to the alias",
			payload: s3Notification(t, nil, "Shop+Orders@Relay.Example.com"),
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "spam FAIL dropped",
			payload: verdicts("FAIL", "PASS", "PASS", ""),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/spam": 1},
		},
		{
			name:    "virus FAIL dropped",
			payload: verdicts("PASS", "FAIL", "PASS", ""),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/virus": 1},
		},
		{
			name:    "verdict status is case-insensitive",
			payload: verdicts("PASS", "fail", "PASS", ""),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/virus": 1},
		},
		{
			name:    "DMARC FAIL with policy reject dropped",
			payload: verdicts("PASS", "PASS", "FAIL", "reject"),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/dmarc_reject": 1},
		},
		{
			name:    "DMARC FAIL with policy none forwarded",
			payload: verdicts("PASS", "PASS", "FAIL", "none"),
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "DMARC FAIL with policy quarantine tagged, spam GRAY forwarded (file as received)",
			payload: notification(t, "received_s3.json", nil),
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/dmarc_quarantine": 1},
		},
		{
			name:    "spam FAIL forwarded when DropSpam is off",
			payload: verdicts("FAIL", "PASS", "PASS", ""),
			cfg:     func(c *Config) { c.Policy.DropSpam = false },
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "virus FAIL forwarded when DropVirus is off",
			payload: verdicts("PASS", "FAIL", "PASS", ""),
			cfg:     func(c *Config) { c.Policy.DropVirus = false },
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "DMARC reject forwarded when DropDMARCReject is off",
			payload: verdicts("PASS", "PASS", "FAIL", "reject"),
			cfg:     func(c *Config) { c.Policy.DropDMARCReject = false },
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "object kept when DeleteObjects is off",
			payload: s3Notification(t, nil),
			cfg:     func(c *Config) { c.Policy.DeleteObjects = false },
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "dropped mail's object kept when DeleteObjects is off",
			payload: verdicts("FAIL", "PASS", "PASS", ""),
			cfg:     func(c *Config) { c.Policy.DeleteObjects = false },
			settle:  "complete",
			counts:  map[string]float64{"dropped/spam": 1},
		},
		{
			name:    "failed delete does not fail the mail",
			payload: s3Notification(t, nil),
			setup:   func(e *env) { e.objects.deleteErr = errors.New("AccessDenied") },
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "unknown alias dropped",
			payload: s3Notification(t, nil, "nobody@relay.example.com"),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/unknown_alias": 1},
		},
		{
			name:    "unknown alias dead-lettered with DeadLetterUnknown",
			payload: s3Notification(t, nil, "nobody@relay.example.com"),
			cfg:     func(c *Config) { c.Policy.DeadLetterUnknown = true },
			settle:  "dead", reason: "unknown_alias",
			counts: map[string]float64{"dead_lettered/unknown_alias": 1},
		},
		{
			name:    "recipient on another domain dropped",
			payload: s3Notification(t, nil, "someone@elsewhere.example"),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/not_our_domain": 1},
		},
		{
			name:    "no recipients at all dropped",
			payload: s3Notification(t, func(n *sesnotify.Notification) { n.Receipt.Recipients = nil }),
			settle:  "complete", deletes: 1,
			counts: map[string]float64{"dropped/no_recipient": 1},
		},
		{
			name:    "two recipients, one unknown: forwarded and one dropped",
			payload: s3Notification(t, nil, "nobody@relay.example.com", "shop@relay.example.com"),
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1, "dropped/unknown_alias": 1},
		},
		{
			name:    "unknown and foreign recipients with DeadLetterUnknown still forward the known one",
			payload: s3Notification(t, nil, "nobody@relay.example.com", "x@elsewhere.example", "sales@relay.example.com"),
			cfg:     func(c *Config) { c.Policy.DeadLetterUnknown = true },
			settle:  "complete", copies: []copyWant{salesCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1, "dropped/unknown_alias": 1, "dropped/not_our_domain": 1},
		},
		{
			name:    "two recipients resolving to the same alias: one copy",
			payload: s3Notification(t, nil, "shop@relay.example.com", "SHOP+tag@relay.example.com"),
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "two aliases: two copies",
			payload: s3Notification(t, nil, "shop@relay.example.com", "sales@relay.example.com"),
			settle:  "complete", copies: []copyWant{shopCopy, salesCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "malformed notification JSON",
			payload: []byte(`{"notificationType": "Received", "mail": {`),
			settle:  "dead", reason: "malformed_notification",
			counts: map[string]float64{"dead_lettered/malformed_notification": 1},
		},
		{
			name:    "notification without mail.messageId",
			payload: s3Notification(t, func(n *sesnotify.Notification) { n.Mail.MessageID = "" }),
			settle:  "dead", reason: "malformed_notification",
			counts: map[string]float64{"dead_lettered/malformed_notification": 1},
		},
		{
			name: "inline content that is not base64",
			payload: notification(t, "received_sns_base64.json", func(n *sesnotify.Notification) {
				n.Content = "not*base64*at*all"
			}),
			settle: "dead", reason: "malformed_notification",
			counts: map[string]float64{"dead_lettered/malformed_notification": 1},
		},
		{
			name: "SNS action without content",
			payload: notification(t, "received_sns_utf8.json", func(n *sesnotify.Notification) {
				n.Content = ""
			}),
			settle: "dead", reason: "no_content",
			counts: map[string]float64{"dead_lettered/no_content": 1},
		},
		{
			name:    "Bounce kept as dead letter",
			payload: notification(t, "bounce.json", nil), kind: "Bounce",
			settle: "dead", reason: "feedback_bounce",
			counts: map[string]float64{"dead_lettered/feedback_bounce": 1},
		},
		{
			name:    "Complaint kept as dead letter",
			payload: notification(t, "complaint.json", nil), kind: "Complaint",
			settle: "dead", reason: "feedback_complaint",
			counts: map[string]float64{"dead_lettered/feedback_complaint": 1},
		},
		{
			name:    "S3 transient error retried",
			payload: s3Notification(t, nil),
			setup:   func(e *env) { e.objects.getErrs = []error{transientS3} },
			settle:  "retry", reason: "s3_timeout", gets: 1,
			counts: map[string]float64{"retried/s3_timeout": 1},
		},
		{
			name:    "S3 unclassified error retried",
			payload: s3Notification(t, nil),
			setup:   func(e *env) { e.objects.getErrs = []error{errors.New("connection reset")} },
			settle:  "retry", reason: "error", gets: 1,
			counts: map[string]float64{"retried/error": 1},
		},
		{
			name:    "S3 object not found dead-lettered",
			payload: s3Notification(t, nil),
			setup:   func(e *env) { e.objects.getErrs = []error{permanentS3} },
			settle:  "dead", reason: "s3_not_found", gets: 1,
			counts: map[string]float64{"dead_lettered/s3_not_found": 1},
		},
		{
			name:    "mail over MaxMessageBytes dead-lettered",
			payload: s3Notification(t, nil),
			cfg:     func(c *Config) { c.Policy.MaxMessageBytes = int64(len(mailEML)) - 1 },
			settle:  "dead", reason: "message_too_large", gets: 1,
			counts: map[string]float64{"dead_lettered/message_too_large": 1},
		},
		{
			name:    "mail of exactly MaxMessageBytes forwarded",
			payload: s3Notification(t, nil),
			cfg:     func(c *Config) { c.Policy.MaxMessageBytes = int64(len(mailEML)) },
			settle:  "complete", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{"forwarded/ok": 1},
		},
		{
			name:    "inline mail over MaxMessageBytes dead-lettered",
			payload: notification(t, "received_sns_base64.json", nil),
			cfg:     func(c *Config) { c.Policy.MaxMessageBytes = 100 },
			settle:  "dead", reason: "message_too_large",
			counts: map[string]float64{"dead_lettered/message_too_large": 1},
		},
		{
			name:    "malformed mail without header/body separator",
			payload: s3Notification(t, nil),
			setup: func(e *env) {
				e.objects.put(testBucket, testKey, []byte("From: a@example.org\r\nTo: shop@relay.example.com\r\nSubject: no separator\r\n"))
			},
			settle: "dead", reason: "malformed_mail", gets: 1,
			counts: map[string]float64{"dead_lettered/malformed_mail": 1},
		},
		{
			name:    "alias lookup failure retried",
			payload: s3Notification(t, nil),
			cfg:     func(c *Config) { c.Aliases = errResolver{errors.New("database is locked")} },
			settle:  "retry", reason: "alias_lookup",
			counts: map[string]float64{"retried/alias_lookup": 1},
		},
		{
			name:    "SES transient error retried",
			payload: s3Notification(t, nil),
			setup: func(e *env) {
				e.sender.errs = map[int]error{0: failure.Transient("ses_throttled", errors.New("Throttling"))}
			},
			settle: "retry", reason: "ses_throttled", gets: 1,
			counts: map[string]float64{"retried/ses_throttled": 1},
		},
		{
			name:    "SES permanent error dead-lettered",
			payload: s3Notification(t, nil),
			setup: func(e *env) {
				e.sender.errs = map[int]error{0: failure.Permanent("ses_rejected", errors.New("MessageRejected"))}
			},
			settle: "dead", reason: "ses_rejected", gets: 1,
			counts: map[string]float64{"dead_lettered/ses_rejected": 1},
		},
		{
			name:    "MarkSent failure retried",
			payload: s3Notification(t, nil),
			setup:   func(e *env) { e.q.markErr = errors.New("disk full") },
			settle:  "retry", reason: "spool_write", gets: 1, copies: []copyWant{shopCopy}, marks: -1,
			counts: map[string]float64{"retried/spool_write": 1},
		},
		{
			name:    "Complete failure releases the entry uncounted",
			payload: s3Notification(t, nil),
			setup:   func(e *env) { e.q.completeErr = errors.New("disk full") },
			settle:  "release", copies: []copyWant{shopCopy}, gets: 1, deletes: 1,
			counts: map[string]float64{},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			if tc.setup != nil {
				tc.setup(e)
			}
			ent := newEntry("sns-1", tc.payload)
			if tc.kind != "" {
				ent.Kind = tc.kind
			}
			e.run(context.Background(), ent)

			completed, retried, dead, released := e.q.outcomes()
			got := map[string]int{"complete": completed, "retry": retried, "dead": dead, "release": released}
			for k, n := range got {
				want := 0
				if k == tc.settle {
					want = 1
				}
				if n != want {
					t.Errorf("%s called %d times, want %d (settle %s)", k, n, want, tc.settle)
				}
			}
			switch tc.settle {
			case "retry":
				if len(e.q.retries) == 1 {
					r := e.q.retries[0]
					if !strings.HasPrefix(r.reason, tc.reason+": ") {
						t.Errorf("retry reason %q, want prefix %q", r.reason, tc.reason+": ")
					}
					lo, hi := testNow.Add(e.p.cfg.RetryMin/2), testNow.Add(e.p.cfg.RetryMin)
					if r.at.Before(lo) || r.at.After(hi) {
						t.Errorf("retry at %v, want in [%v, %v]", r.at, lo, hi)
					}
				}
			case "dead":
				if len(e.q.dead) == 1 && !strings.HasPrefix(e.q.dead[0].reason, tc.reason+": ") {
					t.Errorf("dead-letter reason %q, want prefix %q", e.q.dead[0].reason, tc.reason+": ")
				}
			}

			sent := e.sender.sent()
			if len(sent) != len(tc.copies) {
				t.Fatalf("sent %d copies, want %d: %+v", len(sent), len(tc.copies), sent)
			}
			for i, c := range sent {
				checkCopy(t, c, tc.copies[i], mailEML)
			}
			if n := e.sender.numCalls(); n != len(sent) && tc.settle == "complete" {
				t.Errorf("%d SendRaw calls for %d copies", n, len(sent))
			}
			wantMarks := len(tc.copies)
			if tc.marks != 0 {
				wantMarks = max(tc.marks, 0)
			}
			if len(e.q.marks) != wantMarks {
				t.Errorf("MarkSent called %d times, want %d", len(e.q.marks), wantMarks)
			}
			gets, deletes := e.objects.counts()
			if gets != tc.gets || deletes != tc.deletes {
				t.Errorf("store: %d gets, %d deletes; want %d, %d", gets, deletes, tc.gets, tc.deletes)
			}
			if deletes > 0 && e.objects.deletes[testBucket+"/"+testKey] != deletes {
				t.Errorf("deleted %v, want %s/%s", e.objects.deletes, testBucket, testKey)
			}
			if got := messageCounts(t, e.metrics); !mapsEqual(got, tc.counts) {
				t.Errorf("mailrelay_messages_total %v, want %v", got, tc.counts)
			}
			if n := testutil.ToFloat64(e.metrics.Panics.WithLabelValues("mailproc")); n != 0 {
				t.Errorf("%v panics", n)
			}
			if used := budgetUsed(e.p); used != 0 {
				t.Errorf("byte budget holds %d bytes after the attempt", used)
			}
		})
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A transient S3 failure is retried; the second attempt forwards the mail
// once and only then deletes the object.
func TestRetryThenSuccess(t *testing.T) {
	e := newEnv(t, nil)
	e.objects.getErrs = []error{failure.Transient("s3_timeout", context.DeadlineExceeded)}
	ctx := context.Background()

	e.run(ctx, newEntry("sns-1", s3Notification(t, nil)))
	if len(e.q.retries) != 1 || len(e.q.completed) != 0 || len(e.q.dead) != 0 {
		t.Fatalf("first attempt: %d retries, %d completed, %d dead; want one retry", len(e.q.retries), len(e.q.completed), len(e.q.dead))
	}
	r := e.q.retries[0]
	lo, hi := testNow.Add(e.p.cfg.RetryMin/2), testNow.Add(e.p.cfg.RetryMin)
	if r.at.Before(lo) || r.at.After(hi) {
		t.Errorf("retry at %v, want in [%v, %v]", r.at, lo, hi)
	}
	if !strings.HasPrefix(r.reason, "s3_timeout: ") {
		t.Errorf("retry reason %q", r.reason)
	}
	if _, deletes := e.objects.counts(); deletes != 0 || len(e.sender.calls) != 0 {
		t.Fatalf("first attempt deleted %d objects and sent %d copies", deletes, len(e.sender.calls))
	}

	second := e.q.entry(t, "sns-1")
	if second.Attempts != 1 {
		t.Fatalf("attempts %d after one retry", second.Attempts)
	}
	e.p.handle(ctx, second)
	if len(e.q.completed) != 1 || len(e.q.retries) != 1 {
		t.Fatalf("second attempt: %d completed, %d retries", len(e.q.completed), len(e.q.retries))
	}
	sent := e.sender.sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d copies, want 1", len(sent))
	}
	checkCopy(t, sent[0], shopCopy, mailtest.ReceivedMail())
	if gets, deletes := e.objects.counts(); gets != 2 || deletes != 1 {
		t.Errorf("%d gets, %d deletes; want 2, 1", gets, deletes)
	}
	want := map[string]float64{"retried/s3_timeout": 1, "forwarded/ok": 1}
	if got := messageCounts(t, e.metrics); !mapsEqual(got, want) {
		t.Errorf("mailrelay_messages_total %v, want %v", got, want)
	}
	if v := testutil.ToFloat64(e.metrics.Messages.WithLabelValues(telemetry.MsgForwarded, "ok")); v != 1 {
		t.Errorf("forwarded/ok = %v", v)
	}
}

// SES fails on the second of two copies: the retry sends only the second,
// so no destination gets the mail twice.
func TestSendFailsOnSecondCopy(t *testing.T) {
	e := newEnv(t, nil)
	e.sender.errs = map[int]error{1: failure.Transient("ses_throttled", errors.New("Throttling: maximum sending rate exceeded"))}
	ctx := context.Background()
	payload := s3Notification(t, nil, "shop@relay.example.com", "sales@relay.example.com")

	e.run(ctx, newEntry("sns-1", payload))
	if len(e.q.retries) != 1 || len(e.q.completed) != 0 {
		t.Fatalf("first attempt: %d retries, %d completed", len(e.q.retries), len(e.q.completed))
	}
	if !strings.HasPrefix(e.q.retries[0].reason, "ses_throttled: ") {
		t.Errorf("retry reason %q", e.q.retries[0].reason)
	}
	if len(e.q.marks) != 1 {
		t.Fatalf("%d copies marked sent after the first attempt, want 1", len(e.q.marks))
	}
	if _, deletes := e.objects.counts(); deletes != 0 {
		t.Fatalf("object deleted while a copy is still to be sent")
	}

	second := e.q.entry(t, "sns-1")
	if len(second.Sent) != 1 {
		t.Fatalf("second attempt sees Sent %v", second.Sent)
	}
	e.p.handle(ctx, second)
	if len(e.q.completed) != 1 {
		t.Fatalf("second attempt did not complete (retries %v, dead %v)", e.q.retries, e.q.dead)
	}
	if n := e.sender.numCalls(); n != 3 {
		t.Errorf("%d SendRaw calls, want 3 (shop ok, sales failed, sales ok)", n)
	}
	sent := e.sender.sent()
	seen := map[string]int{}
	for _, c := range sent {
		seen[c.from]++
	}
	if seen[shopCopy.alias] != 1 || seen[salesCopy.alias] != 1 || len(sent) != 2 {
		t.Fatalf("copies sent per alias %v, want each exactly once", seen)
	}
	src := mailtest.ReceivedMail()
	checkCopy(t, sent[0], shopCopy, src)
	checkCopy(t, sent[1], salesCopy, src)
	if len(e.q.marks) != 2 || e.q.marks[0].key == e.q.marks[1].key {
		t.Errorf("sent records %+v, want two distinct keys", e.q.marks)
	}
	if _, deletes := e.objects.counts(); deletes != 1 {
		t.Errorf("%d deletes, want 1", deletes)
	}
	want := map[string]float64{"retried/ses_throttled": 1, "forwarded/ok": 1}
	if got := messageCounts(t, e.metrics); !mapsEqual(got, want) {
		t.Errorf("mailrelay_messages_total %v, want %v", got, want)
	}

	// A third attempt (say after a crash before Complete stuck, the S3
	// object already deleted) neither downloads nor sends.
	gets, _ := e.objects.counts()
	e.q.add(second)
	e.q.mu.Lock()
	e.q.entries["sns-1"].Sent = map[string]string{e.q.marks[0].key: "a", e.q.marks[1].key: "b"}
	e.q.mu.Unlock()
	e.p.handle(ctx, e.q.entry(t, "sns-1"))
	if n := e.sender.numCalls(); n != 3 {
		t.Errorf("attempt with every copy recorded sent called SendRaw again (%d calls)", n)
	}
	if len(e.q.completed) != 2 {
		t.Errorf("attempt with every copy sent did not complete")
	}
	if g, _ := e.objects.counts(); g != gets {
		t.Errorf("attempt with every copy sent downloaded the mail again (%d gets, want %d)", g, gets)
	}
}

// A mail failing transiently for longer than RetryMaxAge is dead-lettered;
// until then it is retried with a backoff that grows with its attempts.
func TestRetriesExhausted(t *testing.T) {
	tests := []struct {
		name     string
		age      time.Duration
		attempts int
		settle   string
		lo, hi   time.Duration // retry delay bounds
		counts   map[string]float64
	}{
		{"young", time.Minute, 0, "retry", time.Second, 2 * time.Second, map[string]float64{"retried/s3_timeout": 1}},
		{"fourth attempt", time.Hour, 3, "retry", 8 * time.Second, 16 * time.Second, map[string]float64{"retried/s3_timeout": 1}},
		{"many attempts capped", 23 * time.Hour, 60, "retry", 150 * time.Second, 300 * time.Second, map[string]float64{"retried/s3_timeout": 1}},
		{"exactly RetryMaxAge", 24 * time.Hour, 40, "retry", 150 * time.Second, 300 * time.Second, map[string]float64{"retried/s3_timeout": 1}},
		{"older than RetryMaxAge", 24*time.Hour + time.Second, 40, "dead", 0, 0, map[string]float64{"dead_lettered/retries_exhausted": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.objects.getErrs = []error{failure.Transient("s3_timeout", errors.New("slow down"))}
			ent := newEntry("sns-1", s3Notification(t, nil))
			ent.EnqueuedAt = testNow.Add(-tc.age)
			ent.Attempts = tc.attempts
			e.run(context.Background(), ent)

			switch tc.settle {
			case "retry":
				if len(e.q.retries) != 1 || len(e.q.dead) != 0 {
					t.Fatalf("%d retries, %d dead letters; want a retry", len(e.q.retries), len(e.q.dead))
				}
				at := e.q.retries[0].at
				if at.Before(testNow.Add(tc.lo)) || at.After(testNow.Add(tc.hi)) {
					t.Errorf("retry in %v, want in [%v, %v]", at.Sub(testNow), tc.lo, tc.hi)
				}
			case "dead":
				if len(e.q.dead) != 1 || len(e.q.retries) != 0 {
					t.Fatalf("%d retries, %d dead letters; want a dead letter", len(e.q.retries), len(e.q.dead))
				}
				if r := e.q.dead[0].reason; !strings.HasPrefix(r, "retries_exhausted: s3_timeout: ") {
					t.Errorf("dead-letter reason %q", r)
				}
			}
			if got := messageCounts(t, e.metrics); !mapsEqual(got, tc.counts) {
				t.Errorf("mailrelay_messages_total %v, want %v", got, tc.counts)
			}
		})
	}

	// A permanent failure is dead-lettered with its own reason whatever the age.
	e := newEnv(t, nil)
	e.objects.getErrs = []error{failure.Permanent("s3_not_found", errors.New("NoSuchKey"))}
	ent := newEntry("sns-1", s3Notification(t, nil))
	ent.EnqueuedAt = testNow.Add(-48 * time.Hour)
	e.run(context.Background(), ent)
	if len(e.q.dead) != 1 || !strings.HasPrefix(e.q.dead[0].reason, "s3_not_found: ") {
		t.Errorf("old permanent failure: dead letters %+v", e.q.dead)
	}
}

// A panicking Sender is counted, the budget is given back, and the entry is
// retried, not lost.
func TestSenderPanic(t *testing.T) {
	e := newEnv(t, nil)
	e.sender.panics = map[int]bool{0: true}
	ctx := context.Background()
	e.run(ctx, newEntry("sns-1", s3Notification(t, nil)))

	if v := testutil.ToFloat64(e.metrics.Panics.WithLabelValues("mailproc")); v != 1 {
		t.Errorf("mailrelay_panics_total{where=mailproc} = %v, want 1", v)
	}
	if len(e.q.retries) != 1 || len(e.q.completed)+len(e.q.dead)+len(e.q.released) != 0 {
		t.Fatalf("after a panic: retries %v, completed %v, dead %v, released %v", e.q.retries, e.q.completed, e.q.dead, e.q.released)
	}
	if !strings.HasPrefix(e.q.retries[0].reason, "panic: ") {
		t.Errorf("retry reason %q", e.q.retries[0].reason)
	}
	if used := budgetUsed(e.p); used != 0 {
		t.Errorf("byte budget holds %d bytes after a panic", used)
	}
	if got := messageCounts(t, e.metrics); !mapsEqual(got, map[string]float64{"retried/panic": 1}) {
		t.Errorf("mailrelay_messages_total %v", got)
	}

	// The next attempt goes through.
	e.p.handle(ctx, e.q.entry(t, "sns-1"))
	if len(e.q.completed) != 1 || len(e.sender.sent()) != 1 {
		t.Errorf("attempt after the panic: completed %v, sent %d", e.q.completed, len(e.sender.sent()))
	}
}

// Canceling the work context while a send is in flight leaves the entry in
// the spool: Release, no retry, no dead letter, nothing counted.
func TestShutdownDuringSend(t *testing.T) {
	e := newEnv(t, nil)
	e.sender.block = true
	e.sender.started = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	done := make(chan struct{})
	go func() {
		defer close(done)
		e.run(ctx, newEntry("sns-1", s3Notification(t, nil)))
	}()
	select {
	case <-e.sender.started:
	case <-time.After(10 * time.Second):
		t.Fatal("send never started")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handle did not return after cancel")
	}

	completed, retried, dead, released := e.q.outcomes()
	if released != 1 || completed+retried+dead != 0 {
		t.Errorf("completed %d, retried %d, dead %d, released %d; want only a release", completed, retried, dead, released)
	}
	if got := messageCounts(t, e.metrics); len(got) != 0 {
		t.Errorf("mailrelay_messages_total %v, want nothing counted", got)
	}
	if _, deletes := e.objects.counts(); deletes != 0 {
		t.Errorf("object deleted though the mail was not sent")
	}
	if used := budgetUsed(e.p); used != 0 {
		t.Errorf("byte budget holds %d bytes", used)
	}
}

// Shutting down while waiting for byte budget releases the entry too.
func TestShutdownWaitingForBudget(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.p.budget.acquire(context.Background(), e.p.budget.limit); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.run(ctx, newEntry("sns-1", s3Notification(t, nil)))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handle waiting for budget did not return after cancel")
	}
	completed, retried, dead, released := e.q.outcomes()
	if released != 1 || completed+retried+dead != 0 {
		t.Errorf("completed %d, retried %d, dead %d, released %d; want only a release", completed, retried, dead, released)
	}
	if gets, _ := e.objects.counts(); gets != 0 {
		t.Errorf("fetched without budget")
	}
	e.p.budget.release(e.p.budget.limit)
	if used := budgetUsed(e.p); used != 0 {
		t.Errorf("byte budget holds %d bytes", used)
	}
}

// An attempt that runs out of AttemptTimeout (the pool is not shutting
// down) is retried with reason timeout.
func TestAttemptTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AttemptTimeout = 20 * time.Millisecond })
	e.sender.block = true
	e.run(context.Background(), newEntry("sns-1", s3Notification(t, nil)))
	if len(e.q.retries) != 1 || len(e.q.released) != 0 {
		t.Fatalf("retries %v, released %v; want one retry", e.q.retries, e.q.released)
	}
	if r := e.q.retries[0].reason; !strings.HasPrefix(r, "timeout: ") {
		t.Errorf("retry reason %q, want timeout", r)
	}
}

// The byte budget must be balanced after every attempt, whatever the ratio
// of InFlightBytes to MaxMessageBytes that config allows (at least 1), and
// while a copy is sent it holds a share of the budget within its limit.
func TestBudgetBalancedAfterAttempt(t *testing.T) {
	for _, inflight := range []int64{testMaxMB, testMaxMB * 3 / 2, 2 * testMaxMB, 8 * testMaxMB} {
		t.Run(fmt.Sprintf("inflight=%d", inflight), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.InFlightBytes = inflight })
			var during []int64
			e.sender.hook = func(ctx context.Context, call int) error {
				during = append(during, budgetUsed(e.p))
				return nil
			}
			for i := range 3 {
				e.run(context.Background(), newEntry(fmt.Sprintf("sns-%d", i), s3Notification(t, nil)))
				if used := budgetUsed(e.p); used != 0 {
					t.Fatalf("after message %d the byte budget holds %d bytes, want 0", i, used)
				}
				if g := testutil.ToFloat64(e.metrics.InFlightBytes); g != 0 {
					t.Fatalf("after message %d mailrelay_inflight_bytes = %v, want 0", i, g)
				}
			}
			if len(e.q.completed) != 3 {
				t.Fatalf("completed %v", e.q.completed)
			}
			for _, u := range during {
				if u <= 0 || u > inflight {
					t.Errorf("budget held during send: %d, want in (0, %d]", u, inflight)
				}
			}
		})
	}
}

// Retry delays grow exponentially from RetryMin, are capped at RetryMax,
// and are jittered over the upper half of the step.
func TestBackoff(t *testing.T) {
	tests := []struct {
		min, max time.Duration
	}{
		{2 * time.Second, 5 * time.Minute},
		{time.Second, time.Second},
		{100 * time.Millisecond, time.Hour},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%v-%v", tc.min, tc.max), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.RetryMin, c.RetryMax = tc.min, tc.max })
			attemptsList := []int{100, 1000, 1 << 30}
			for i := range 40 {
				attemptsList = append(attemptsList, i)
			}
			for _, attempts := range attemptsList {
				step := tc.min
				for range min(attempts, 64) {
					if step >= tc.max {
						break
					}
					step *= 2
				}
				step = min(step, tc.max)
				lo, hi := step/2, step
				var minSeen, maxSeen time.Duration = hi + 1, -1
				distinct := map[time.Duration]bool{}
				for range 2000 {
					d := e.p.backoff(attempts)
					if d < lo || d > hi {
						t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempts, d, lo, hi)
					}
					minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
					distinct[d] = true
				}
				// Full jitter: the samples spread over the range.
				quarter := (hi - lo) / 4
				if minSeen > lo+quarter || maxSeen < hi-quarter || len(distinct) < 100 {
					t.Errorf("backoff(%d): samples in [%v, %v], %d distinct; want spread over [%v, %v]", attempts, minSeen, maxSeen, len(distinct), lo, hi)
				}
			}
		})
	}
}

// An alias with more destinations than SES takes per send goes out as
// several copies of at most MaxDestinations; a failure part-way resumes
// with the chunks not yet sent, so every destination gets the mail once.
func TestLargeAliasSplit(t *testing.T) {
	const n = 2*MaxDestinations + 20
	var yaml strings.Builder
	yaml.WriteString("domains: [relay.example.com]\naliases:\n  - address: list@relay.example.com\n    forward_to:\n")
	var all []string
	for i := range n {
		a := fmt.Sprintf("u%03d@example.org", i)
		all = append(all, a)
		fmt.Fprintf(&yaml, "      - %s\n", a)
	}
	table, err := aliases.Parse([]byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Aliases = table })
	e.sender.errs = map[int]error{1: failure.Transient("ses_throttled", errors.New("Throttling"))}
	ctx := context.Background()
	e.run(ctx, newEntry("sns-1", s3Notification(t, nil, "list@relay.example.com")))
	if len(e.q.retries) != 1 || len(e.q.marks) != 1 {
		t.Fatalf("first attempt: retries %v, marks %d; want one retry after one chunk", e.q.retries, len(e.q.marks))
	}
	e.p.handle(ctx, e.q.entry(t, "sns-1"))
	if len(e.q.completed) != 1 {
		t.Fatalf("second attempt did not complete: retries %v, dead %v", e.q.retries, e.q.dead)
	}

	sent := e.sender.sent()
	if len(sent) != 3 {
		t.Fatalf("%d copies sent, want 3", len(sent))
	}
	got := map[string]int{}
	src := mailtest.ReceivedMail()
	for _, c := range sent {
		if len(c.to) > MaxDestinations {
			t.Errorf("a send to %d destinations, SES takes %d", len(c.to), MaxDestinations)
		}
		checkCopy(t, c, copyWant{"list@relay.example.com", c.to}, src)
		for _, d := range c.to {
			got[d]++
		}
	}
	for _, a := range all {
		if got[a] != 1 {
			t.Errorf("%s got the mail %d times", a, got[a])
		}
	}
	if len(got) != n {
		t.Errorf("%d distinct destinations, want %d", len(got), n)
	}
}
