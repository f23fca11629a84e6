package devstack

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // RFC 2047 names in any common charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
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

// notification is the Received notification SES would publish for raw,
// stored by the S3 action under relaytest.Key(sesID) and received for
// recipients at now: every verdict PASS, the mail's source and headers
// filled in (unknown@sender.invalid as the source of a mail without
// Return-Path or From).
func notification(raw []byte, sesID string, recipients []string, now time.Time) *sesnotify.Notification {
	n := sesnotify.Received(sesID, now, recipients, sesnotify.S3Action(TopicARN, Bucket, relaytest.Key(sesID))).Pass()
	n.Receipt.Action.ObjectKeyPrefix = relaytest.KeyPrefix
	n.Receipt.ProcessingTimeMillis = "1"
	n.Mail.Source = "unknown@sender.invalid"
	return n.SetMail(raw)
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
