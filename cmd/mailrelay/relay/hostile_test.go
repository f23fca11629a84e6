package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/inbound/sns"
)

// counter is a listener on 127.0.0.1 that counts every request it gets: the
// place hostile URLs point at, so that a request the relay must never make
// is seen instead of leaving the machine.
type counter struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newCounter(t *testing.T) *counter {
	t.Helper()
	c := &counter{}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		_, _ = w.Write([]byte("ok\n"))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.srv.Listener.Close()
	c.srv.Listener = ln
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

// signedWithCert returns a notification signed by the test signer but naming
// certURL as its signing certificate.
func signedWithCert(h *harness, id, certURL string) []byte {
	m := &sns.Message{
		Type:           sns.TypeNotification,
		MessageId:      id,
		TopicArn:       testTopic,
		Message:        receivedS3(h, "ses-"+id, "shop@relay.example.com"),
		Timestamp:      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		SigningCertURL: certURL,
	}
	return h.Signer.Body(m, "2")
}

// TestHostileRequests sends hostile SNS deliveries through the real
// endpoint. Every one gets its final status, nothing is stored or sent, and
// no URL the relay must not fetch is fetched.
func TestHostileRequests(t *testing.T) {
	evil := newCounter(t)
	evilURL, _ := url.Parse(evil.srv.URL)
	// The evil listener is also allowed over https only, so an http URL on
	// it is a downgrade that must be refused.
	h := newHarness(t, func(c *config.Config) {
		c.SNSCertURLPrefixes = append(c.SNSCertURLPrefixes, "https://"+evilURL.Host+"/sns/")
	})
	signerURL, _ := url.Parse(h.Signer.CertURL())
	// aws uses the AWS rule (no prefixes) for the scheme and userinfo tricks
	// on the real SNS host name; each is refused before any I/O.
	aws := newHarness(t, func(c *config.Config) { c.SNSCertURLPrefixes = nil })

	note := receivedS3(h, "ses-h", "shop@relay.example.com")
	good := h.Signer.Notification(testTopic, "h-good", "", note, "2")
	tests := []struct {
		name string
		h    *harness
		body []byte
		want int
	}{
		{"forged signature", h, bytes.Replace(good, []byte(`"h-good"`), []byte(`"h-forged"`), 1), 403},
		{"signature of another message", h, bytes.Replace(h.Signer.Notification(testTopic, "h-x", "", note, "2"),
			[]byte(`"Message":"`), []byte(`"Message":" `), 1), 403},
		{"unsupported signature version", h, bytes.Replace(good, []byte(`"SignatureVersion":"2"`), []byte(`"SignatureVersion":"3"`), 1), 403},
		{"cert on another host", h, signedWithCert(h, "h-c1", evil.srv.URL+"/sns/"+"SimpleNotificationService-x.pem"), 403},
		{"cert https to http downgrade", h, signedWithCert(h, "h-c2", "http://"+evilURL.Host+"/sns/x.pem"), 403},
		{"cert path outside prefix", h, signedWithCert(h, "h-c3", "http://"+signerURL.Host+"/other/x.pem"), 403},
		{"cert dot segments", h, signedWithCert(h, "h-c4", "http://"+signerURL.Host+"/sns/../x.pem"), 403},
		{"cert userinfo to evil", h, signedWithCert(h, "h-c5", "http://"+signerURL.Host+"@"+evilURL.Host+"/sns/x.pem"), 403},
		{"aws rule: http downgrade", aws, signedWithCert(aws, "a-c1", "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"), 403},
		{"aws rule: userinfo trick", aws, signedWithCert(aws, "a-c2", "https://sns.us-east-1.amazonaws.com@evil.example/x.pem"), 403},
		{"aws rule: userinfo to loopback", aws, signedWithCert(aws, "a-c3", "https://sns.us-east-1.amazonaws.com@"+evilURL.Host+"/x.pem"), 403},
		{"aws rule: port", aws, signedWithCert(aws, "a-c4", "https://sns.us-east-1.amazonaws.com:"+evilURL.Port()+"/x.pem"), 403},
		{"aws rule: look-alike host", aws, signedWithCert(aws, "a-c5", "https://sns.us-east-1.amazonaws.com.evil.example/x.pem"), 403},
		{"subscribe url elsewhere", h, h.Signer.SubscriptionConfirmation(testTopic, evil.srv.URL+"/confirm"), 403},
		{"subscribe url userinfo", h, h.Signer.SubscriptionConfirmation(testTopic, "http://"+signerURL.Host+"@"+evilURL.Host+"/confirm"), 403},
		{"subscribe url downgrade", h, h.Signer.SubscriptionConfirmation(testTopic, "http://"+evilURL.Host+"/confirm"), 403},
		{"wrong topic", h, h.Signer.Notification("arn:aws:sns:us-east-1:123456789012:other", "h-t", "", note, "2"), 403},
		{"huge body", h, bytes.Repeat([]byte("x"), 2<<20), 413},
		{"huge signed body", h, h.Signer.Notification(testTopic, "h-big", "", strings.Repeat("y", 2<<20), "2"), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Post(tt.body); got != tt.want {
				t.Fatalf("answered %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("huge chunked body", func(t *testing.T) {
		// No Content-Length: the cap must hold on the stream.
		r := io.MultiReader(strings.NewReader(`{"Type":"Notification","Message":"`), io.LimitReader(zeros{}, 4<<20))
		resp, err := http.Post("http://"+h.Relay.InboundAddr+"/sns", "text/plain", r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("answered %d, want 413", resp.StatusCode)
		}
	})
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the relay made %d requests to a URL it must not fetch", n)
	}
	for name, hh := range map[string]*harness{"prefix": h, "aws": aws} {
		if st := hh.Relay.Spool.Stats(); st.Messages != 0 || st.DeadLetters != 0 {
			t.Errorf("%s relay stored hostile input: %+v", name, st)
		}
		if n := len(hh.SES.Sent()); n != 0 {
			t.Errorf("%s relay sent %d mails", name, n)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

// TestHeaderInjectionThroughDisplayName forwards mails whose From display
// name carries line breaks and other separators (raw or as encoded words):
// the forwarded header block has exactly one From field on a single line and
// none of the fields the name tried to inject.
func TestHeaderInjectionThroughDisplayName(t *testing.T) {
	h := newHarness(t, nil)
	froms := []struct {
		name, from string
	}{
		{"encoded CRLF", "=?utf-8?q?Mallory=0D=0ABcc:_victim@example.com=0D=0AX-Injected:_1?= <mallory@example.net>"},
		{"encoded LF", "=?utf-8?b?" + b64("Mallory\nBcc: victim@example.com\nX-Injected: 1") + "?= <mallory@example.net>"},
		{"encoded NUL", "=?utf-8?q?Mallory=00X-Injected:_1?= <mallory@example.net>"},
		{"raw U+2028", "\"Mallory\u2028X-Injected: 1\" <mallory@example.net>"},
		{"raw U+2029", "\"Mallory\u2029X-Injected: 1\" <mallory@example.net>"},
		{"encoded U+2028", "=?utf-8?b?" + b64("Mallory\u2028Bcc: victim@example.com\u2029X-Injected: 1") + "?= <mallory@example.net>"},
		{"quoted CR LF", "\"Mallory\r\n X-Injected: 1\" <mallory@example.net>"},
	}
	for i, f := range froms {
		mail := fmt.Sprintf("From: %s\r\nTo: shop@relay.example.com\r\nSubject: inject %d\r\nMessage-ID: <inj%d@example.net>\r\n\r\nbody\r\n", f.from, i, i)
		h.Deliver(fmt.Sprintf("inj-%d", i), fmt.Sprintf("ses-inj-%d", i), []byte(mail), "shop@relay.example.com")
	}
	sent := h.WaitSent(len(froms))
	if len(sent) != len(froms) {
		t.Fatalf("%d sent, want %d", len(sent), len(froms))
	}
	for _, s := range sent {
		hdrEnd := bytes.Index(s.Raw, []byte("\r\n\r\n"))
		if hdrEnd < 0 {
			t.Fatalf("no header end in %q", s.Raw)
		}
		block := s.Raw[:hdrEnd+2]
		hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(s.Raw)))
		if err != nil {
			t.Fatalf("forwarded header does not parse: %v\n%s", err, block)
		}
		subject := hdr.Get("Subject")
		if n := len(hdr.Values("From")); n != 1 {
			t.Errorf("%s: %d From fields\n%s", subject, n, block)
		}
		for _, k := range []string{"Bcc", "X-Injected"} {
			if hdr.Has(k) {
				t.Errorf("%s: injected field %s present\n%s", subject, k, block)
			}
		}
		// The From field is one physical line (no folding needed for this
		// length is not required, but no bare CR, LF, NUL or Unicode line
		// separators may appear in it).
		raw := fieldRaw(block, "From")
		if raw == nil {
			t.Errorf("%s: no From line", subject)
			continue
		}
		unfolded := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n "), []byte(" ")), []byte("\r\n\t"), []byte("\t"))
		unfolded = bytes.TrimSuffix(unfolded, []byte("\r\n"))
		if bytes.ContainsAny(unfolded, "\r\n\x00") || bytes.ContainsRune(unfolded, '\u2028') || bytes.ContainsRune(unfolded, '\u2029') {
			t.Errorf("%s: From carries a separator: %q", subject, raw)
		}
		if !bytes.Contains(unfolded, []byte("<shop@relay.example.com>")) {
			t.Errorf("%s: From is not the alias: %q", subject, raw)
		}
		// Every line of the header block is a field or a continuation.
		for _, line := range strings.Split(strings.TrimSuffix(string(block), "\r\n"), "\r\n") {
			if line == "" || (line[0] != ' ' && line[0] != '\t' && !strings.Contains(line, ":")) {
				t.Errorf("%s: stray header line %q", subject, line)
			}
			if strings.ContainsAny(line, "\r\n\x00") {
				t.Errorf("%s: bare CR/LF/NUL in %q", subject, line)
			}
		}
	}
}

// fieldRaw returns the raw bytes of the first field named name in a CRLF
// header block, with its continuation lines.
func fieldRaw(block []byte, name string) []byte {
	lines := bytes.SplitAfter(block, []byte("\r\n"))
	for i, l := range lines {
		if len(l) > len(name) && bytes.EqualFold(l[:len(name)+1], []byte(name+":")) {
			out := append([]byte(nil), l...)
			for _, c := range lines[i+1:] {
				if len(c) == 0 || (c[0] != ' ' && c[0] != '\t') {
					break
				}
				out = append(out, c...)
			}
			return out
		}
	}
	return nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestTenThousandRecipients: one Received notification naming 10,000
// recipients, one of them an alias. It is forwarded once to the alias's
// destinations and every other recipient is counted as dropped.
func TestTenThousandRecipients(t *testing.T) {
	h := newHarness(t, nil)
	recips := make([]string, 0, 10000)
	for i := range 9999 {
		if i%2 == 0 {
			recips = append(recips, fmt.Sprintf("u%d@relay.example.com", i))
		} else {
			recips = append(recips, fmt.Sprintf("u%d@elsewhere.example", i))
		}
	}
	recips = slices.Insert(recips, 5000, "news@relay.example.com")
	h.Deliver("many", "ses-many", testMail(1), recips...)
	sent := h.WaitSent(1)
	waitFor(t, "finished", func() bool { return h.Relay.Spool.Stats().Messages == 0 })
	sent = h.SES.Sent()
	if len(sent) != 1 {
		t.Fatalf("forwarded %d times, want once", len(sent))
	}
	if want := []string{"bob@example.org", "carol@example.org"}; !slices.Equal(sent[0].Destinations, want) {
		t.Errorf("destinations %v, want %v", sent[0].Destinations, want)
	}
	m := h.Relay.Metrics.Messages
	// Outcomes are counted after the entry completes.
	waitFor(t, "outcomes counted", func() bool {
		return testutil.ToFloat64(m.WithLabelValues("forwarded", "ok")) == 1 &&
			testutil.ToFloat64(m.WithLabelValues("dropped", "unknown_alias"))+testutil.ToFloat64(m.WithLabelValues("dropped", "not_our_domain")) >= 9999
	})
	unknown := testutil.ToFloat64(m.WithLabelValues("dropped", "unknown_alias"))
	foreign := testutil.ToFloat64(m.WithLabelValues("dropped", "not_our_domain"))
	if unknown != 5000 || foreign != 4999 {
		t.Errorf("dropped counted unknown_alias=%v not_our_domain=%v, want 5000 and 4999", unknown, foreign)
	}
	if got := testutil.ToFloat64(m.WithLabelValues("forwarded", "ok")); got != 1 {
		t.Errorf("forwarded counted %v", got)
	}
}

// TestMessageTooLargeDeadLettered: a mail over --max-message-bytes is
// dead-lettered as message_too_large on its first attempt, refused on the
// object's length rather than read whole.
func TestMessageTooLargeDeadLettered(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxMessageBytes = 16 << 10 })
	big := append(testMail(1), bytes.Repeat([]byte("0123456789abcdef\r\n"), 4<<20/18)...)
	h.Deliver("big", "ses-big", big, "shop@relay.example.com")
	c := &admin.Client{BaseURL: "http://" + h.Relay.AdminAddr}
	var items []admin.Item
	waitFor(t, "dead letter", func() bool {
		var err error
		items, err = c.List(context.Background(), 10)
		return err == nil && len(items) == 1
	})
	it := items[0]
	if it.ID != "big" || !strings.HasPrefix(it.Reason, "message_too_large") {
		t.Fatalf("dead letter %+v", it)
	}
	if !strings.Contains(it.Reason, "object is") {
		t.Errorf("refused after reading, not on the object's length: %q", it.Reason)
	}
	if it.Attempts > 1 {
		t.Errorf("%d attempts for a permanent failure", it.Attempts)
	}
	if n := len(h.SES.Sent()); n != 0 {
		t.Errorf("sent %d", n)
	}
	waitFor(t, "dead letter counted", func() bool {
		return testutil.ToFloat64(h.Relay.Metrics.Messages.WithLabelValues("dead_lettered", "message_too_large")) == 1
	})
}
