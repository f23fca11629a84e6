package devstack

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // RFC 2047 names in any common charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// parsedMail is what the playground reads from a mail it is asked to
// deliver: enough to fill an SES notification and to recognise the
// forwarded copies in the outbox.
type parsedMail struct {
	// ok is false for a mail without a header/body separator or with an
	// unparseable header block; the relay dead-letters such a mail.
	ok     bool
	header mail.Header
	// body is everything after the separator line, which the relay passes
	// through byte for byte; bodySum is its SHA-256.
	body    []byte
	bodySum [sha256.Size]byte
}

// splitMail returns the header block (separator line included) and the
// body of raw. The header ends at the first empty line ("\n" or "\r\n");
// ok is false if there is none.
func splitMail(raw []byte) (hdr, body []byte, ok bool) {
	for i := 0; i < len(raw); {
		end := bytes.IndexByte(raw[i:], '\n')
		if end < 0 {
			return nil, nil, false
		}
		line := raw[i : i+end+1]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return raw[:i+end+1], raw[i+end+1:], true
		}
		i += end + 1
	}
	return nil, nil, false
}

// parseMail reads raw leniently: it never fails, a mail it cannot read has
// ok false and an empty header.
func parseMail(raw []byte) parsedMail {
	hdr, body, ok := splitMail(raw)
	if !ok {
		return parsedMail{}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return parsedMail{}
	}
	return parsedMail{ok: true, header: mail.Header{Header: message.Header{Header: h}}, body: body, bodySum: sha256.Sum256(body)}
}

// addresses returns the addresses of the named address-list fields, in
// order; unparseable fields are skipped.
func (m parsedMail) addresses(keys ...string) []*mail.Address {
	var out []*mail.Address
	for _, k := range keys {
		if !m.ok || !m.header.Has(k) {
			continue
		}
		l, err := m.header.AddressList(k)
		if err != nil {
			continue
		}
		out = append(out, l...)
	}
	return out
}

// messageID returns the first Message-ID field as written, or "".
func (m parsedMail) messageID() string {
	if !m.ok {
		return ""
	}
	return strings.TrimSpace(m.header.Get("Message-Id"))
}

// received is an SES "Received" notification for a mail stored by the S3
// action, shaped as SES sends it (sesnotify/testdata/received_s3.json).
type received struct {
	NotificationType string `json:"notificationType"`
	Mail             struct {
		Timestamp        string                  `json:"timestamp"`
		Source           string                  `json:"source"`
		MessageID        string                  `json:"messageId"`
		Destination      []string                `json:"destination"`
		HeadersTruncated bool                    `json:"headersTruncated"`
		Headers          []sesnotify.Header      `json:"headers"`
		CommonHeaders    sesnotify.CommonHeaders `json:"commonHeaders"`
	} `json:"mail"`
	Receipt struct {
		Timestamp            string            `json:"timestamp"`
		ProcessingTimeMillis string            `json:"processingTimeMillis"`
		Recipients           []string          `json:"recipients"`
		SpamVerdict          sesnotify.Verdict `json:"spamVerdict"`
		VirusVerdict         sesnotify.Verdict `json:"virusVerdict"`
		SPFVerdict           sesnotify.Verdict `json:"spfVerdict"`
		DKIMVerdict          sesnotify.Verdict `json:"dkimVerdict"`
		DMARCVerdict         sesnotify.Verdict `json:"dmarcVerdict"`
		Action               struct {
			Type            string `json:"type"`
			TopicArn        string `json:"topicArn"`
			BucketName      string `json:"bucketName"`
			ObjectKeyPrefix string `json:"objectKeyPrefix"`
			ObjectKey       string `json:"objectKey"`
		} `json:"action"`
	} `json:"receipt"`
}

// maxListedHeaders caps mail.headers, as SES truncates (headersTruncated).
const maxListedHeaders = 100

// notification builds the JSON of the Received notification SES would
// publish for m, stored at bucket/key, received for recipients at now.
// Every sesnotify.Verdict is PASS.
func notification(m parsedMail, sesID, topicARN, bucket, key string, recipients []string, now time.Time) []byte {
	var n received
	ts := snstest.Timestamp(now)
	n.NotificationType = "Received"
	n.Mail.Timestamp = ts
	n.Mail.MessageID = sesID
	n.Mail.Destination = recipients
	n.Mail.Source = "unknown@sender.invalid"
	if from := m.addresses("From"); len(from) > 0 {
		n.Mail.Source = from[0].Address
	}
	if rp := m.addresses("Return-Path"); len(rp) > 0 {
		n.Mail.Source = rp[0].Address
		n.Mail.CommonHeaders.ReturnPath = rp[0].Address
	}
	n.Mail.Headers = []sesnotify.Header{}
	if m.ok {
		for f := m.header.Fields(); f.Next(); {
			if len(n.Mail.Headers) == maxListedHeaders {
				n.Mail.HeadersTruncated = true
				break
			}
			n.Mail.Headers = append(n.Mail.Headers, sesnotify.Header{Name: f.Key(), Value: strings.TrimSpace(f.Value())})
		}
		c := &n.Mail.CommonHeaders
		c.From = formatAddresses(m.addresses("From"))
		c.ReplyTo = formatAddresses(m.addresses("Reply-To"))
		c.To = formatAddresses(m.addresses("To"))
		c.Cc = formatAddresses(m.addresses("Cc"))
		c.Date = strings.TrimSpace(m.header.Get("Date"))
		c.MessageID = m.messageID()
		if s, err := m.header.Subject(); err == nil {
			c.Subject = s
		} else {
			c.Subject = m.header.Get("Subject")
		}
	}

	r := &n.Receipt
	r.Timestamp = ts
	r.ProcessingTimeMillis = "1"
	r.Recipients = recipients
	pass := sesnotify.Verdict{Status: "PASS"}
	r.SpamVerdict, r.VirusVerdict, r.SPFVerdict, r.DKIMVerdict, r.DMARCVerdict = pass, pass, pass, pass, pass
	r.Action.Type = "S3"
	r.Action.TopicArn = topicARN
	r.Action.BucketName = bucket
	r.Action.ObjectKeyPrefix = keyPrefix
	r.Action.ObjectKey = key
	b, err := json.Marshal(n)
	if err != nil {
		panic("devstack: marshal notification: " + err.Error()) // only strings and slices: cannot fail
	}
	return b
}

func formatAddresses(l []*mail.Address) []string {
	out := make([]string, 0, len(l))
	for _, a := range l {
		out = append(out, a.String())
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// normAddress lower-cases addr and strips a +tag from its local part, as
// the relay's alias lookup does.
func normAddress(addr string) string {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local, domain := addr[:at], addr[at:]
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	return local + domain
}
