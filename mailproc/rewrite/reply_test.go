package rewrite

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

const (
	dest    = "Bob.Real@example.com"
	replyTo = "r1-abcdefghijklmnopqrstuvwxyz@relay.example.com"
)

func replyParams() ReplyParams {
	return ReplyParams{Alias: alias, To: "news@example.org", Destination: dest}
}

// A reply as a mail client writes it: quoted text names the destination.
const multipartReply = "Received: from mail.example.com (203.0.113.9) by inbound-smtp\r\n" +
	"Return-Path: <bob.real@example.com>\r\n" +
	"From: Bob Real <bob.real@EXAMPLE.com>\r\n" +
	"To: \"News [via Relay]\" <" + replyTo + ">\r\n" +
	"Cc: bob.real@example.com, Carol <carol@example.net>\r\n" +
	"Reply-To: bob.real@example.com\r\n" +
	"Subject: Re: Hello\r\n" +
	"Message-ID: <abc@mail.example.com>\r\n" +
	"In-Reply-To: <orig@example.org>\r\n" +
	"X-Originating-IP: [198.51.100.7]\r\n" +
	"Disposition-Notification-To: bob.real@example.com\r\n" +
	"X-Mailer: Client 1.0 for bob.real@example.com\r\n" +
	"X-Mailrelay-Alias: shop@relay.example.com\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
	"\r\n" +
	"preamble bob.real@example.com\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Thanks!\r\n\r\nOn Monday, Bob <bob.real@example.com> wrote... jimbob.real@example.com stays, and BOB.REAL@example.com.\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<p>bob.real@example.com</p>\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"bob.real@example.com=\r\n" +
	"--b1--\r\n" +
	"epilogue\r\n"

func TestReply(t *testing.T) {
	var out bytes.Buffer
	res, err := Reply(&out, strings.NewReader(multipartReply), replyParams())
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	hdr, body, _ := strings.Cut(got, "\r\n\r\n")
	if containsFold([]byte(hdr), dest) {
		t.Errorf("the destination is still in the header:\n%s", hdr)
	}
	h := header(t, out.Bytes())
	for n, want := range map[string]string{
		"from": "<" + alias + ">", "to": "<news@example.org>", "cc": `"Carol" <carol@example.net>`,
		"subject": "Re: Hello", "message-id": "<abc@mail.example.com>", "in-reply-to": "<orig@example.org>",
		"reply-to": "", "received": "", "x-originating-ip": "", "return-path": "", "x-mailer": "", "x-mailrelay-alias": "",
		"disposition-notification-to": "", "mime-version": "1.0",
	} {
		if strings.Join(h[n], "|") != want {
			t.Errorf("%s = %q, want %q", n, h[n], want)
		}
	}
	wantBody := strings.Replace(multipartReply[strings.Index(multipartReply, "\r\n\r\n")+4:],
		"On Monday, Bob <bob.real@example.com> wrote... jimbob.real@example.com stays, and BOB.REAL@example.com.",
		"On Monday, Bob <"+alias+"> wrote... jimbob.real@example.com stays, and "+alias+".", 1)
	if body != wantBody {
		t.Errorf("body:\n got %q\nwant %q", body, wantBody)
	}
	if res.Removed != 7 || res.HeaderBytes+res.BodyBytes != int64(out.Len()) {
		t.Errorf("Result %+v", res)
	}
}

func TestReplyBodies(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain, no Content-Type", "From: bob.real@example.com\n\nhi bob.real@example.com\n", "hi " + alias + "\n"},
		{"plain 8bit", "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n<Bob.Real@Example.com>\n", "<" + alias + ">\n"},
		{"base64 untouched", "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nbob.real@example.com\n", "bob.real@example.com\n"},
		{"html untouched", "Content-Type: text/html\n\nbob.real@example.com\n", "bob.real@example.com\n"},
		{"bad content type untouched", "Content-Type: text/plain; ;;\n\nbob.real@example.com\n", "bob.real@example.com\n"},
		{"longer address untouched", "\nbob.real@example.com.au x.bob.real@example.com\n", "bob.real@example.com.au x.bob.real@example.com\n"},
		{"nested multipart", "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\nbob.real@example.com\n--i--\n--o--\n",
			"--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\n" + alias + "\n--i--\n--o--\n"},
		{"unterminated multipart", "Content-Type: multipart/mixed; boundary=o\n\n--o\n\nbob.real@example.com", "--o\n\nbob.real@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := Reply(&out, strings.NewReader(tc.in), replyParams()); err != nil {
				t.Fatal(err)
			}
			_, body, _ := strings.Cut(out.String(), "\n\n")
			if body != tc.want {
				t.Errorf("body %q, want %q", body, tc.want)
			}
		})
	}
}

// Every corpus mail goes through Reply without losing its MIME structure:
// with a destination that is not in it, the body is byte-identical.
func TestReplyCorpus(t *testing.T) {
	for _, f := range mailtest.Corpus() {
		var out bytes.Buffer
		_, err := Reply(&out, bytes.NewReader(f.Raw), ReplyParams{Alias: alias, To: "x@example.org", Destination: "nobody@nowhere.invalid"})
		if f.Malformed() {
			if failure.ReasonOf(err) != failure.ReasonMalformedMail {
				t.Errorf("%s: %v", f.Name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f.Name, err)
			continue
		}
		if !bytes.Equal(split(t, out.Bytes()).body, split(t, f.Raw).body) {
			t.Errorf("%s: body changed", f.Name)
		}
	}
}

func TestReplyErrors(t *testing.T) {
	for _, p := range []ReplyParams{
		{Alias: "bad", To: "a@b.c", Destination: dest},
		{Alias: alias, To: "a b@c", Destination: dest},
		{Alias: alias, To: "a@b.c", Destination: ""},
	} {
		if _, err := Reply(&bytes.Buffer{}, strings.NewReader("A: b\n\n"), p); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
	p := replyParams()
	p.MaxBytes = 10
	if _, err := Reply(&bytes.Buffer{}, strings.NewReader("A: b\n\n0123456789"), p); failure.ReasonOf(err) != failure.ReasonMessageTooLarge {
		t.Errorf("too large: %v", err)
	}
	if _, err := Reply(&bytes.Buffer{}, strings.NewReader("no header"), replyParams()); !errors.Is(err, err) || failure.ReasonOf(err) != failure.ReasonMalformedMail {
		t.Errorf("malformed: %v", err)
	}
}

func FuzzReply(f *testing.F) {
	f.Add([]byte(multipartReply))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=o\n\n--o\n\nbob.real@example.com\n--o--\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkHeaderPath(t, in) // Parse and Header.Reply give the same
		var out bytes.Buffer
		if _, err := Reply(&out, bytes.NewReader(in), replyParams()); err != nil {
			return
		}
		hdr := bytes.Join(split(t, out.Bytes()).fields, nil)
		if containsFold(hdr, dest) {
			t.Fatalf("destination left in header %q", hdr)
		}
	})
}
