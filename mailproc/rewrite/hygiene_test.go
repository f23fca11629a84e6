package rewrite

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// TestHeaderHygiene: line breaks in kept fields are neutralised, read
// receipts dropped, the body left alone (exact output).
func TestHeaderHygiene(t *testing.T) {
	const from = "From: A <a@example.org>\r\n"
	const newFrom = "From: \"A [via Relay]\" <shop@relay.example.com>\r\nReply-To: \"A\" <a@example.org>\r\n"
	tests := []struct {
		name, in, want string
		removed        int
		repaired       int
	}{
		{"bare CR in Subject becomes a space",
			from + "Subject: hi\rBcc: victim@example.com\r\n\r\nbody\r",
			newFrom + "Subject: hi Bcc: victim@example.com\r\n\r\nbody\r", 0, 1},
		{"several bare CRs, one before CRLF",
			from + "X-A: a\r\rb\r\r\n\r\nbody",
			newFrom + "X-A: a  b \r\n\r\nbody", 0, 1},
		{"bare CR in a continuation line",
			from + "X-A: a\r\n b\rc\r\n\r\nbody",
			newFrom + "X-A: a\r\n b c\r\n\r\nbody", 0, 1},
		{"bare LF in a CRLF header gets its CR; the field after it is one of its own",
			from + "Subject: hi\nBcc: victim@example.com\r\nX-B: b\nX-C: c\r\n\r\nbody\n",
			newFrom + "Subject: hi\r\nX-B: b\r\nX-C: c\r\n\r\nbody\n", 1, 2},
		{"bare LF folding in a CRLF header",
			from + "X-A: a\n b\r\n\r\nbody",
			newFrom + "X-A: a\r\n b\r\n\r\nbody", 0, 1},
		{"LF-only header left as it is",
			"From: A <a@example.org>\nX-A: a\n b\n\nbody\r\n",
			"From: \"A [via Relay]\" <shop@relay.example.com>\nReply-To: \"A\" <a@example.org>\nX-A: a\n b\n\nbody\r\n", 0, 0},
		{"CRLF line in an LF-only header is not bare",
			"From: A <a@example.org>\nX-A: a\r\n\nbody",
			"From: \"A [via Relay]\" <shop@relay.example.com>\nReply-To: \"A\" <a@example.org>\nX-A: a\r\n\nbody", 0, 0},
		{"bare CR in a kept Reply-To",
			from + "Reply-To: b@example.org\rBcc: c@example.org\r\n\r\nx",
			"From: \"A [via Relay]\" <shop@relay.example.com>\r\nReply-To: b@example.org Bcc: c@example.org\r\n\r\nx", 0, 1},
		{"read receipts dropped, any case",
			from + "Disposition-Notification-To: a@example.org\r\nRETURN-RECEIPT-TO: a@example.org\r\nx-confirm-reading-to: <a@example.org>\r\nDisposition-Notification-Options: signed-receipt-protocol=optional,pkcs7-signature\r\n\r\nx",
			newFrom + "Disposition-Notification-Options: signed-receipt-protocol=optional,pkcs7-signature\r\n\r\nx", 3, 0},
		{"body with bare CR and LF untouched",
			from + "\r\nline\rline\nline\r\n",
			newFrom + "\r\nline\rline\nline\r\n", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Rewrite(&out, strings.NewReader(tt.in), Params{Alias: alias})
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got\n%q\nwant\n%q", out.String(), tt.want)
			}
			if res.Removed != tt.removed || res.Repaired != tt.repaired {
				t.Errorf("Removed %d Repaired %d, want %d %d", res.Removed, res.Repaired, tt.removed, tt.repaired)
			}
		})
	}
}

func TestLoopMarker(t *testing.T) {
	tests := []struct {
		name, in, marker, want string
	}{
		{"on top, CRLF", "Subject: s\r\nFrom: a@example.org\r\n\r\nb",
			"relay.example.com", "X-Mailrelay-Loop: relay.example.com\r\nSubject: s\r\n"},
		{"on top, LF", "Subject: s\nFrom: a@example.org\n\nb",
			"relay.example.com", "X-Mailrelay-Loop: relay.example.com\nSubject: s\n"},
		{"another relay's marker kept", "X-Mailrelay-Loop: other.example\r\nFrom: a@example.org\r\n\r\nb",
			"relay.example.com", "X-Mailrelay-Loop: relay.example.com\r\nX-Mailrelay-Loop: other.example\r\n"},
		{"none without a marker", "Subject: s\r\nFrom: a@example.org\r\n\r\nb", "", "Subject: s\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := Rewrite(&out, strings.NewReader(tt.in), Params{Alias: alias, LoopMarker: tt.marker}); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.String(), tt.want) {
				t.Errorf("got\n%q\nwant prefix\n%q", out.String(), tt.want)
			}
		})
	}
	for _, bad := range []string{"a b", "a\r\nBcc: x", "é", strings.Repeat("a", 256)} {
		if _, err := Rewrite(&bytes.Buffer{}, strings.NewReader("From: a@b\r\n\r\n"), Params{Alias: alias, LoopMarker: bad}); err == nil {
			t.Errorf("marker %q accepted", bad)
		}
	}
}

// TestInvalidAlias: an alias that is not a plain addr-spec (a catch-all hit
// on `"a b"@relay`) is a permanent failure, not retried for a day.
func TestInvalidAlias(t *testing.T) {
	for _, a := range []string{`"a b"@relay.example.com`, "a b@relay.example.com", "jörg@relay.example.com", "@relay.example.com", "x@", "a<b>@relay.example.com"} {
		_, err := Rewrite(&bytes.Buffer{}, strings.NewReader("From: a@b\r\n\r\n"), Params{Alias: a})
		if !failure.IsPermanent(err) || failure.ReasonOf(err) != failure.ReasonInvalidRecipient {
			t.Errorf("alias %q: %v, want permanent invalid_recipient", a, err)
		}
	}
}

func TestExamine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Facts
	}{
		{"ordinary", "Return-Path: <a@example.org>\r\nFrom: a@example.org\r\nContent-Type: text/plain\r\n\r\nx", Facts{}},
		{"null sender", "Return-Path: <>\r\nFrom: MAILER-DAEMON@example.org\r\n\r\nx", Facts{NullSender: true}},
		{"null sender with blanks", "Return-Path:  < >\n\nx", Facts{NullSender: true}},
		{"only the first Return-Path", "Return-Path: <a@example.org>\r\nReturn-Path: <>\r\n\r\nx", Facts{}},
		{"auto-replied", "Auto-Submitted: Auto-Replied (vacation)\r\n\r\nx", Facts{AutoSubmitted: "auto-replied"}},
		{"auto-generated with params", "Auto-Submitted: auto-generated; owner-email=x@example.org\r\n\r\nx", Facts{AutoSubmitted: "auto-generated"}},
		{"auto-submitted no", "Auto-Submitted: no\r\n\r\nx", Facts{AutoSubmitted: "no"}},
		{"dsn", "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"b\"\r\n\r\nx", Facts{DeliveryReport: true}},
		{"dsn quoted and upper case", "Content-Type: Multipart/Report; Report-Type=\"Delivery-Status\"; boundary=b\r\n\r\nx", Facts{DeliveryReport: true}},
		{"global dsn", "Content-Type: multipart/report; report-type=global-delivery-status; boundary=b\r\n\r\nx", Facts{DeliveryReport: true}},
		{"sloppy dsn", "Content-Type: multipart/report; report-type=delivery-status; report-type=x; boundary=b\r\n\r\nx", Facts{DeliveryReport: true}},
		{"bare delivery-status", "Content-Type: message/delivery-status\r\n\r\nx", Facts{DeliveryReport: true}},
		{"read receipt report is not a dsn", "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\nx", Facts{}},
		{"markers", "X-Mailrelay-Loop: Relay.Example.com\r\nx-mailrelay-loop:  other.example \r\n\r\nx", Facts{LoopMarkers: []string{"relay.example.com", "other.example"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Examine([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got.NullSender != tt.want.NullSender || got.AutoSubmitted != tt.want.AutoSubmitted ||
				got.DeliveryReport != tt.want.DeliveryReport || !slices.Equal(got.LoopMarkers, tt.want.LoopMarkers) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	f, _ := Examine([]byte("X-Mailrelay-Loop: relay.example.com\r\nAuto-Submitted: no\r\n\r\n"))
	if !f.HasLoopMarker("RELAY.example.com") || f.HasLoopMarker("other") || f.IsAutoSubmitted() {
		t.Errorf("%+v", f)
	}
	if _, err := Examine([]byte("no header\r\n")); !failure.IsPermanent(err) {
		t.Errorf("malformed: %v", err)
	}
}
