package rewrite

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// smallMail is a ~2 KB plain-text mail with a realistic SES-received
// header: trace fields, SES verdicts, a DKIM signature.
func smallMail() []byte {
	h := []string{
		"Return-Path: <alice@example.org>",
		"Received: from mail.example.org (mail.example.org [192.0.2.10])",
		" by inbound-smtp.us-east-1.amazonaws.com with SMTP id 0123456789abcdef",
		" for shop@relay.example.com; Mon, 02 Mar 2026 10:00:00 +0000 (UTC)",
		"X-SES-Spam-Verdict: PASS",
		"X-SES-Virus-Verdict: PASS",
		"Received-SPF: pass (spfCheck: domain of example.org designates 192.0.2.10 as permitted sender)",
		"Authentication-Results: amazonses.com; spf=pass smtp.mailfrom=alice@example.org;",
		" dkim=pass header.i=@example.org; dmarc=pass header.from=example.org;",
		"X-SES-RECEIPT: AEFBQUFBQUFBQUFFeXg0d1J4Yk1zL2pXUHdLQ0hXQ0RqNENSUmJHQ1ZuRWRtb2JUd3U3",
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel1;",
		"\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;",
		"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgbG9va3MgbGlrZSBvbmU=",
		"From: Alice Example <alice@example.org>",
		"To: shop@relay.example.com",
		"Subject: Question about order #1234",
		"Date: Mon, 02 Mar 2026 10:59:59 +0100",
		"Message-ID: <CAF=abc123def456@mail.example.org>",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 7bit",
	}
	body := strings.Repeat("Hello, I ordered something last week and it has not arrived yet.\r\n", 14)
	return []byte(strings.Join(h, "\r\n") + "\r\n\r\n" + body)
}

// largeMail is a mail with a 1 MiB base64 attachment.
func largeMail() []byte {
	bin := make([]byte, 1<<20)
	for i := range bin {
		bin[i] = byte(i*7 + i>>8)
	}
	enc := base64.StdEncoding.EncodeToString(bin)
	var b bytes.Buffer
	b.Write(smallMail()[:bytes.Index(smallMail(), []byte("Content-Type:"))])
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\n")
	b.WriteString("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b--\r\n")
	return b.Bytes()
}

// benchRewrite rewrites msg into a reused buffer, as the processor does.
// Besides wall-clock mails/s it reports cpu-mails/s, mails per second of
// process CPU time (GC included), which stays meaningful on a shared,
// oversubscribed machine.
func benchRewrite(b *testing.B, msg []byte) {
	p := Params{Alias: alias}
	r := bytes.NewReader(msg)
	var dst bytes.Buffer
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	cpu0, ok := processCPU()
	for b.Loop() {
		r.Reset(msg)
		dst.Reset()
		if _, err := Rewrite(&dst, r, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "mails/s")
	if cpu1, ok1 := processCPU(); ok && ok1 && cpu1 > cpu0 {
		b.ReportMetric(float64(b.N)/(cpu1-cpu0).Seconds(), "cpu-mails/s")
	}
}

func BenchmarkRewriteSmall(b *testing.B) { benchRewrite(b, smallMail()) }
func BenchmarkRewriteLarge(b *testing.B) { benchRewrite(b, largeMail()) }

// TestBenchMessages makes sure the benchmarks measure a successful rewrite
// of a message of the intended size.
func TestBenchMessages(t *testing.T) {
	small, large := smallMail(), largeMail()
	if len(small) < 1800 || len(small) > 2300 {
		t.Errorf("small mail is %d bytes, want ~2 KB", len(small))
	}
	if len(large) < 1<<20 {
		t.Errorf("large mail is %d bytes", len(large))
	}
	for _, msg := range [][]byte{small, large} {
		var out bytes.Buffer
		res, err := Rewrite(&out, bytes.NewReader(msg), Params{Alias: alias})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(split(t, out.Bytes()).body, split(t, msg).body) || res.OriginalFrom != "alice@example.org" || res.Removed != 5 {
			t.Fatalf("unexpected rewrite: %+v", res)
		}
	}
}
