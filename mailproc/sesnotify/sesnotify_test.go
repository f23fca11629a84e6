package sesnotify

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

func TestParseSamples(t *testing.T) {
	mail := mailtest.ReceivedMail()
	tests := []struct {
		file      string
		typ       string
		messageID string
		check     func(t *testing.T, n *Notification)
	}{
		{"received_sns_utf8.json", TypeReceived, "7q3hn0b2v8c1k5m9p4r6s0t2u8v3w1x5y7z9a2b4", func(t *testing.T, n *Notification) {
			a := n.Receipt.Action
			if a.Type != ActionSNS || a.Encoding != EncodingUTF8 || a.TopicArn != "arn:aws:sns:eu-west-1:111122223333:ses-inbound" {
				t.Errorf("action %+v", a)
			}
			checkContent(t, n, mail)
		}},
		{"received_sns_base64.json", TypeReceived, "9z8y7x6w5v4u3t2s1r0q9p8o7n6m5l4k3j2i1h0g", func(t *testing.T, n *Notification) {
			if n.Receipt.Action.Encoding != EncodingBase64 {
				t.Errorf("encoding %q", n.Receipt.Action.Encoding)
			}
			checkContent(t, n, mail)
		}},
		{"received_s3.json", TypeReceived, "c2v5b9sj1q0r8m7n6p5k4t3u2v1w0x9y8z7a6b5c", func(t *testing.T, n *Notification) {
			r := n.Receipt
			want := Action{Type: ActionS3, TopicArn: "arn:aws:sns:eu-west-1:111122223333:ses-inbound", BucketName: "relay-inbound-mail",
				ObjectKeyPrefix: "incoming/", ObjectKey: "incoming/c2v5b9sj1q0r8m7n6p5k4t3u2v1w0x9y8z7a6b5c"}
			if r.Action != want {
				t.Errorf("action %+v, want %+v", r.Action, want)
			}
			if r.SpamVerdict.Status != StatusGray || r.VirusVerdict.Status != StatusPass || r.SPFVerdict.Status != StatusPass ||
				r.DKIMVerdict.Status != StatusPass || r.DMARCVerdict.Status != StatusFail || r.DMARCPolicy != "quarantine" {
				t.Errorf("verdicts %+v", r)
			}
			if r.ProcessingTimeMillis.String() != "388" {
				t.Errorf("processingTimeMillis %q", r.ProcessingTimeMillis)
			}
			if len(r.Recipients) != 1 || r.Recipients[0] != "shop@relay.example.com" {
				t.Errorf("recipients %v", r.Recipients)
			}
			if !r.Timestamp.Equal(time.Date(2024, 3, 1, 10, 11, 12, 512e6, time.UTC)) {
				t.Errorf("receipt timestamp %v", r.Timestamp)
			}
			b, ok, err := n.InlineContent()
			if b != nil || ok || err != nil {
				t.Errorf("InlineContent of S3 notification = %q, %v, %v", b, ok, err)
			}
			m := n.Mail
			if m.Source != "alice@sender.example" || len(m.Destination) != 1 || m.HeadersTruncated || len(m.Headers) != 10 ||
				m.Headers[0] != (Header{"Return-Path", "<alice@sender.example>"}) {
				t.Errorf("mail %+v", m)
			}
			c := m.CommonHeaders
			if len(c.From) != 1 || c.From[0] != "Alice Example <alice@sender.example>" || c.Subject != `Order #1234 "express"` ||
				c.MessageID != "<CAF1234abcd@mail.sender.example>" || len(c.Cc) != 1 || c.ReturnPath != "alice@sender.example" {
				t.Errorf("common headers %+v", c)
			}
		}},
		{"bounce.json", TypeBounce, "0102018df4a2a1b2-11111111-2222-3333-4444-555555555555-000000", func(t *testing.T, n *Notification) {
			if n.Receipt != nil || !bytes.Contains(n.Bounce, []byte(`"bounceType": "Permanent"`)) || n.Complaint != nil {
				t.Errorf("bounce %+v", n)
			}
		}},
		{"complaint.json", TypeComplaint, "0102018df4a2a1b2-66666666-7777-8888-9999-000000000000-000000", func(t *testing.T, n *Notification) {
			if !bytes.Contains(n.Complaint, []byte(`"complaintFeedbackType": "abuse"`)) || n.Bounce != nil {
				t.Errorf("complaint %+v", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			n, err := Parse(mailtest.Notification(tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n.NotificationType != tt.typ || n.Mail.MessageID != tt.messageID {
				t.Errorf("type %q id %q, want %q %q", n.NotificationType, n.Mail.MessageID, tt.typ, tt.messageID)
			}
			tt.check(t, n)
		})
	}
}

func checkContent(t *testing.T, n *Notification, want []byte) {
	t.Helper()
	b, ok, err := n.InlineContent()
	if err != nil || !ok {
		t.Fatalf("InlineContent: ok %v err %v", ok, err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("content:\n got %q\nwant %q", b, want)
	}
}

var malformedTests = []struct {
	name string
	body string
}{
	{"not json", `{`},
	{"array", `[]`},
	{"empty", ``},
	{"no type", `{"mail":{"messageId":"m"}}`},
	{"unknown type", `{"notificationType":"Delivery","mail":{"messageId":"m"}}`},
	{"received without receipt", `{"notificationType":"Received","mail":{"messageId":"m"}}`},
	{"received without action", `{"notificationType":"Received","mail":{"messageId":"m"},"receipt":{"recipients":["a@b"]}}`},
	{"s3 without bucket", `{"notificationType":"Received","mail":{"messageId":"m"},"receipt":{"action":{"type":"S3"}}}`},
	{"sns with bad encoding", `{"notificationType":"Received","mail":{"messageId":"m"},"receipt":{"action":{"type":"SNS","encoding":"UTF-16"}}}`},
	{"no message id", `{"notificationType":"Received","mail":{},"receipt":{"action":{"type":"SNS"}}}`},
	{"bad timestamp", `{"notificationType":"Bounce","mail":{"messageId":"m","timestamp":"yesterday"}}`},
	{"wrong field type", `{"notificationType":"Received","mail":{"messageId":"m","destination":"a@b"},"receipt":{"action":{"type":"SNS"}}}`},
	{"processing time not a number", `{"notificationType":"Received","mail":{"messageId":"m"},"receipt":{"processingTimeMillis":"fast","action":{"type":"SNS"}}}`},
}

func TestParseMalformed(t *testing.T) {
	for _, tt := range malformedTests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.body))
			if err == nil {
				t.Fatalf("Parse accepted %s: %+v", tt.body, n)
			}
			if !errors.Is(err, ErrMalformed) || !failure.IsPermanent(err) || failure.ReasonOf(err) != failure.ReasonMalformedNotification {
				t.Errorf("error %v: want permanent %s wrapping ErrMalformed", err, failure.ReasonMalformedNotification)
			}
		})
	}
}

func TestInlineContent(t *testing.T) {
	tests := []struct {
		name    string
		n       Notification
		want    string
		present bool
		err     bool
	}{
		{"none", Notification{}, "", false, false},
		{"utf8 without receipt", Notification{Content: "a\r\nb"}, "a\r\nb", true, false},
		{"utf8 default", Notification{Content: "x", Receipt: &Receipt{Action: Action{Type: ActionSNS}}}, "x", true, false},
		{"base64", Notification{Content: "aGVsbG8=", Receipt: &Receipt{Action: Action{Encoding: EncodingBase64}}}, "hello", true, false},
		{"base64 wrapped", Notification{Content: "aGVs\r\nbG8=\n", Receipt: &Receipt{Action: Action{Encoding: EncodingBase64}}}, "hello", true, false},
		{"base64 spaces", Notification{Content: "aGVs bG8=", Receipt: &Receipt{Action: Action{Encoding: EncodingBase64}}}, "hello", true, false},
		{"bad base64", Notification{Content: "***", Receipt: &Receipt{Action: Action{Encoding: EncodingBase64}}}, "", true, true},
		{"unknown encoding", Notification{Content: "x", Receipt: &Receipt{Action: Action{Encoding: "ROT13"}}}, "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok, err := tt.n.InlineContent()
			if (err != nil) != tt.err || ok != tt.present || string(b) != tt.want {
				t.Fatalf("InlineContent = %q, %v, %v; want %q, %v, err %v", b, ok, err, tt.want, tt.present, tt.err)
			}
			if err != nil && (!errors.Is(err, ErrMalformed) || !failure.IsPermanent(err)) {
				t.Errorf("error %v not a permanent ErrMalformed", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"received_sns_utf8.json", "received_sns_base64.json", "received_s3.json", "bounce.json", "complaint.json"} {
		f.Add(mailtest.Notification(name))
	}
	for _, tt := range malformedTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !failure.IsPermanent(err) {
				t.Fatalf("error %v not a permanent ErrMalformed", err)
			}
			return
		}
		if n.Mail.MessageID == "" {
			t.Fatal("accepted without mail.messageId")
		}
		if n.NotificationType == TypeReceived && (n.Receipt == nil || n.Receipt.Action.Type == "") {
			t.Fatal("accepted Received without action")
		}
		if _, _, err := n.InlineContent(); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("InlineContent error %v", err)
		}
	})
}
