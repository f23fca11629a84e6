package devstack

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

var splitTests = []struct {
	name      string
	raw       string
	ok        bool
	hdr, body string
}{
	{"crlf", "From: a@b\r\nTo: c@d\r\n\r\nbody\r\n", true, "From: a@b\r\nTo: c@d\r\n\r\n", "body\r\n"},
	{"lf", "From: a@b\n\nbody\n\nmore\n", true, "From: a@b\n\n", "body\n\nmore\n"},
	{"empty body", "Subject: x\r\n\r\n", true, "Subject: x\r\n\r\n", ""},
	{"no header", "\r\nbody", true, "\r\n", "body"},
	{"folded", "Subject: a\r\n b\r\n\r\nx", true, "Subject: a\r\n b\r\n\r\n", "x"},
	{"blank-looking continuation", "Subject: a\r\n \r\n\r\nx", true, "Subject: a\r\n \r\n\r\n", "x"},
	{"no separator", "garbage without any header separator", false, "", ""},
	{"headers only", "From: a@b\r\nTo: c@d\r\n", false, "", ""},
	{"empty", "", false, "", ""},
	{"cr only line is not a separator", "From: a@b\r\r\nbody", false, "", ""},
}

func TestSplitMail(t *testing.T) {
	for _, tt := range splitTests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, body, ok := splitMail([]byte(tt.raw))
			if ok != tt.ok || string(hdr) != tt.hdr || string(body) != tt.body {
				t.Fatalf("splitMail = %q, %q, %v; want %q, %q, %v", hdr, body, ok, tt.hdr, tt.body, tt.ok)
			}
		})
	}
}

func TestNotificationShape(t *testing.T) {
	raw := []byte("Return-Path: <bounce@example.net>\r\nFrom: Dora Sender <dora@example.net>\r\n" +
		"To: shop@relay.example.com, x@elsewhere.example\r\nCc: \"Bob\" <bob@relay.example.com>\r\n" +
		"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.net>\r\n\r\nhi\r\n")
	rcpts := []string{"shop@relay.example.com"}
	b := notification(raw, "ses-1", rcpts, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)).JSON()
	n, err := sesnotify.Parse(b)
	if err != nil {
		t.Fatalf("sesnotify.Parse: %v\n%s", err, b)
	}
	c := n.Mail.CommonHeaders
	checks := []struct {
		name      string
		got, want any
	}{
		{"type", n.NotificationType, "Received"},
		{"ses id", n.Mail.MessageID, "ses-1"},
		{"source", n.Mail.Source, "bounce@example.net"},
		{"destination", n.Mail.Destination, rcpts},
		{"recipients", n.Receipt.Recipients, rcpts},
		{"action", n.Receipt.Action, sesnotify.Action{Type: "S3", TopicArn: TopicARN, BucketName: Bucket, ObjectKeyPrefix: "inbound/", ObjectKey: "inbound/ses-1"}},
		{"spam", n.Receipt.SpamVerdict.Status, "PASS"},
		{"dmarc", n.Receipt.DMARCVerdict.Status, "PASS"},
		{"from", c.From, []string{`"Dora Sender" <dora@example.net>`}},
		{"to", c.To, []string{"<shop@relay.example.com>", "<x@elsewhere.example>"}},
		{"cc", c.Cc, []string{`"Bob" <bob@relay.example.com>`}},
		{"subject", c.Subject, "Grüße"},
		{"message id", c.MessageID, "<m1@example.net>"},
		{"date", c.Date, "Mon, 23 Nov 2026 10:00:00 +0000"},
		{"return path", c.ReturnPath, "bounce@example.net"},
		{"headers", len(n.Mail.Headers), 7},
		{"timestamp", n.Mail.Timestamp, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)},
	}
	for _, ck := range checks {
		if !equal(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	if h := n.Mail.Headers[4]; h.Name != "Subject" || h.Value != "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=" {
		t.Errorf("headers[4] = %+v", h)
	}
}

func equal(a, b any) bool {
	if as, ok := a.([]string); ok {
		bs, ok := b.([]string)
		return ok && slices.Equal(as, bs)
	}
	if at, ok := a.(time.Time); ok {
		bt, ok := b.(time.Time)
		return ok && at.Equal(bt)
	}
	return a == b
}

func TestNotificationOfGarbage(t *testing.T) {
	b := notification([]byte("no header separator at all"), "ses-2", []string{"a@relay.example.com"}, time.Now()).JSON()
	n, err := sesnotify.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if n.Mail.Source != "unknown@sender.invalid" || len(n.Mail.Headers) != 0 || n.Mail.CommonHeaders.Subject != "" {
		t.Errorf("garbage gave %+v", n.Mail)
	}
}

func TestNormAddress(t *testing.T) {
	for in, want := range map[string]string{
		"Shop@Relay.Example.com":     "shop@relay.example.com",
		"shop+tag@relay.example.com": "shop@relay.example.com",
		" x+a+b@d ":                  "x@d",
		"nodomain":                   "nodomain",
	} {
		if got := normAddress(in); got != want {
			t.Errorf("normAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTrackerAttribution: two identical mails to the same alias, sent at
// once, each get one of the two copies; a mail with another body gets none.
func TestTrackerAttribution(t *testing.T) {
	raw := []byte("From: d@example.net\r\nTo: shop@relay.example.com\r\nMessage-ID: <same@x>\r\n\r\nbody\r\n")
	fwd := []byte("From: \"d\" <shop@relay.example.com>\r\nReply-To: d@example.net\r\nTo: shop@relay.example.com\r\nMessage-ID: <same@x>\r\n\r\nbody\r\n")
	other := []byte("From: d@example.net\r\nMessage-ID: <same@x>\r\n\r\nother body\r\n")
	tr := newTracker("/outbox")
	for i, m := range [][]byte{raw, raw, other} {
		p := parseMail(m)
		tr.add(&record{sesID: string(rune('a' + i)), messageID: p.messageID(), bodySum: p.bodySum, hasBody: p.ok,
			recipients: map[string]bool{"shop@relay.example.com": true}, copyKeys: map[string]bool{}})
	}
	for _, id := range []string{"1", "2"} {
		if err := tr.observe(fakes.Sent{ID: id, Raw: fwd, Destinations: []string{"you@example.org"}}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := tr.get("a")
	b, _ := tr.get("b")
	c, _ := tr.get("c")
	if len(a.copies) != 1 || a.copies[0].Path != "/outbox/1.eml" || a.copies[0].From != "shop@relay.example.com" {
		t.Errorf("a got %+v", a.copies)
	}
	if len(b.copies) != 1 || b.copies[0].Path != "/outbox/2.eml" {
		t.Errorf("b got %+v", b.copies)
	}
	if len(c.copies) != 0 {
		t.Errorf("c got %+v", c.copies)
	}
	// A finished mail gets no more copies.
	tr.markFinished("a")
	tr.markFinished("b")
	_ = tr.observe(fakes.Sent{ID: "3", Raw: fwd})
	if a, _ := tr.get("a"); len(a.copies) != 1 {
		t.Errorf("finished mail got another copy: %+v", a.copies)
	}
}

// FuzzNotification: whatever the mail, the notification is one the relay
// parses, for the given recipients and object, and the split is exact.
func FuzzNotification(f *testing.F) {
	for _, tt := range splitTests {
		f.Add([]byte(tt.raw))
	}
	f.Add(sample)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := parseMail(raw)
		if hdr, body, ok := splitMail(raw); ok {
			if !bytes.Equal(append(slices.Clip(hdr), body...), raw) {
				t.Fatalf("split %q + %q != %q", hdr, body, raw)
			}
			if m.ok && !bytes.Equal(m.body, body) {
				t.Fatalf("parsed body %q, split body %q", m.body, body)
			}
		} else if m.ok {
			t.Fatal("parsed a mail without a separator")
		}
		rcpts := []string{"shop@relay.example.com"}
		n, err := sesnotify.Parse(notification(raw, "id", rcpts, time.Now()).JSON())
		if err != nil {
			t.Fatalf("relay would refuse the notification: %v", err)
		}
		if !slices.Equal(n.Receipt.Recipients, rcpts) || n.Receipt.Action.ObjectKey != "inbound/id" || n.Mail.MessageID != "id" {
			t.Fatalf("notification lost its routing: %+v", n.Receipt)
		}
	})
}
