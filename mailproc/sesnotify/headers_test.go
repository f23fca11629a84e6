package sesnotify

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSetMail(t *testing.T) {
	full := "Return-Path: <bounce@example.net>\r\nFrom: Dora Sender <dora@example.net>\r\n" +
		"To: shop@relay.example.com, x@elsewhere.example\r\nCc: \"Bob\" <bob@relay.example.com>\r\n" +
		"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.net>\r\n\r\nhi\r\n"
	var many strings.Builder
	for i := range MaxListedHeaders + 5 {
		fmt.Fprintf(&many, "X-N: %d\r\n", i)
	}
	many.WriteString("\r\nbody\r\n")

	tests := []struct {
		name      string
		raw       string
		source    string // before SetMail: "was@before.invalid"
		headers   int
		truncated bool
		first     Header
		common    CommonHeaders
	}{
		{"full", full, "bounce@example.net", 7, false, Header{"Return-Path", "<bounce@example.net>"}, CommonHeaders{
			ReturnPath: "bounce@example.net",
			From:       []string{`"Dora Sender" <dora@example.net>`},
			To:         []string{"<shop@relay.example.com>", "<x@elsewhere.example>"},
			Cc:         []string{`"Bob" <bob@relay.example.com>`},
			Date:       "Mon, 23 Nov 2026 10:00:00 +0000",
			MessageID:  "<m1@example.net>",
			Subject:    "Grüße",
		}},
		{"from only, lf", "From: d@example.net\nReply-To: r@example.net\nSubject: plain\n\nbody\n", "d@example.net", 3, false,
			Header{"From", "d@example.net"}, CommonHeaders{From: []string{"<d@example.net>"}, ReplyTo: []string{"<r@example.net>"}, Subject: "plain"}},
		{"folded subject", "Subject: a\r\n b\r\n\r\nx", "was@before.invalid", 1, false, Header{"Subject", "a b"}, CommonHeaders{Subject: "a b"}},
		{"unparseable from", "From: not an address\r\n\r\nx", "was@before.invalid", 1, false, Header{"From", "not an address"}, CommonHeaders{}},
		{"too many headers", many.String(), "was@before.invalid", MaxListedHeaders, true, Header{"X-N", "0"}, CommonHeaders{}},
		{"no header", "\r\nbody", "was@before.invalid", 0, false, Header{}, CommonHeaders{}},
		{"garbage", "no header separator at all", "was@before.invalid", 0, false, Header{}, CommonHeaders{}},
		{"empty", "", "was@before.invalid", 0, false, Header{}, CommonHeaders{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := Received("ses-1", time.Now(), []string{"shop@relay.example.com"}, S3Action("arn:t", "b", "k"))
			n.Mail.Source = "was@before.invalid"
			if got := n.SetMail([]byte(tt.raw)); got != n {
				t.Fatal("SetMail did not return n")
			}
			m := n.Mail
			if m.Source != tt.source {
				t.Errorf("source %q, want %q", m.Source, tt.source)
			}
			if len(m.Headers) != tt.headers || m.HeadersTruncated != tt.truncated {
				t.Errorf("%d headers (truncated %v), want %d (%v)", len(m.Headers), m.HeadersTruncated, tt.headers, tt.truncated)
			}
			if tt.headers > 0 && m.Headers[0] != tt.first {
				t.Errorf("first header %+v, want %+v", m.Headers[0], tt.first)
			}
			if !reflect.DeepEqual(m.CommonHeaders, tt.common) {
				t.Errorf("common headers\n %+v\nwant\n %+v", m.CommonHeaders, tt.common)
			}
			// What SetMail fills in survives the round trip the relay makes.
			p, err := Parse(n.JSON())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Mail.CommonHeaders, tt.common) || len(p.Mail.Headers) != tt.headers || p.Mail.MessageID != "ses-1" {
				t.Errorf("parsed back as %+v", p.Mail)
			}
		})
	}
}

// A raw subject is listed as written and decoded in commonHeaders.
func TestSetMailHeaderValuesAsWritten(t *testing.T) {
	n := Received("ses-1", time.Now(), nil, S3Action("arn:t", "b", "k")).
		SetMail([]byte("From: a@example.net\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"))
	if h := n.Mail.Headers[1]; h.Name != "Subject" || h.Value != "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=" {
		t.Errorf("headers[1] = %+v", h)
	}
	if n.Mail.CommonHeaders.Subject != "Grüße" {
		t.Errorf("subject %q", n.Mail.CommonHeaders.Subject)
	}
}

// FuzzSetMail: whatever the mail, the notification still parses, keeps its
// routing, and lists at most MaxListedHeaders headers.
func FuzzSetMail(f *testing.F) {
	for _, s := range []string{"From: a@b\r\nTo: c@d\r\n\r\nbody\r\n", "\r\nbody", "garbage", "", "Subject: a\r\n \r\n\r\nx"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rcpts := []string{"shop@relay.example.com"}
		n := Received("id", time.Now(), rcpts, S3Action("arn:t", "b", "inbound/id")).Pass().SetMail(raw)
		p, err := Parse(n.JSON())
		if err != nil {
			t.Fatalf("relay would refuse the notification: %v", err)
		}
		if !reflect.DeepEqual(p.Receipt.Recipients, rcpts) || p.Receipt.Action.ObjectKey != "inbound/id" || p.Mail.MessageID != "id" {
			t.Fatalf("notification lost its routing: %+v", p.Receipt)
		}
		if len(p.Mail.Headers) > MaxListedHeaders {
			t.Fatalf("%d headers listed", len(p.Mail.Headers))
		}
	})
}
