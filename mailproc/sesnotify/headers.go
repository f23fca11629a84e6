package sesnotify

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // RFC 2047 names in any common charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// MaxListedHeaders caps mail.headers: SES lists at most this many and sets
// headersTruncated.
const MaxListedHeaders = 100

// SetMail fills in what SES reads from the mail itself: mail.source (the
// Return-Path address, else the first From address; left as is when the
// mail has neither), mail.headers in order (at most MaxListedHeaders, with
// headersTruncated), and mail.commonHeaders. A mail whose header block
// cannot be read (a line that is no field, such as text without any
// header) gets an empty header list and no common headers.
// It returns n.
func (n *Notification) SetMail(raw []byte) *Notification {
	m := &n.Mail
	m.Headers, m.HeadersTruncated, m.CommonHeaders = []Header{}, false, CommonHeaders{}
	h, ok := readHeader(raw)
	if from := addresses(h, ok, "From"); len(from) > 0 {
		m.Source = from[0].Address
	}
	if rp := addresses(h, ok, "Return-Path"); len(rp) > 0 {
		m.Source = rp[0].Address
		m.CommonHeaders.ReturnPath = rp[0].Address
	}
	if !ok {
		return n
	}
	for f := h.Fields(); f.Next(); {
		if len(m.Headers) == MaxListedHeaders {
			m.HeadersTruncated = true
			break
		}
		m.Headers = append(m.Headers, Header{Name: f.Key(), Value: strings.TrimSpace(f.Value())})
	}
	c := &m.CommonHeaders
	c.From = formatAddresses(addresses(h, ok, "From"))
	c.ReplyTo = formatAddresses(addresses(h, ok, "Reply-To"))
	c.To = formatAddresses(addresses(h, ok, "To"))
	c.Cc = formatAddresses(addresses(h, ok, "Cc"))
	c.Date = strings.TrimSpace(h.Get("Date"))
	c.MessageID = strings.TrimSpace(h.Get("Message-Id"))
	if s, err := h.Subject(); err == nil {
		c.Subject = s
	} else {
		c.Subject = h.Get("Subject")
	}
	return n
}

// readHeader reads the header block of raw (up to the first empty line or
// the end); ok is false if a field in it is malformed.
func readHeader(raw []byte) (h mail.Header, ok bool) {
	th, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return mail.Header{}, false
	}
	return mail.Header{Header: message.Header{Header: th}}, true
}

// addresses returns the addresses of field key, or nil if it is absent or
// unparseable.
func addresses(h mail.Header, ok bool, key string) []*mail.Address {
	if !ok || !h.Has(key) {
		return nil
	}
	l, err := h.AddressList(key)
	if err != nil {
		return nil
	}
	return l
}

func formatAddresses(l []*mail.Address) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, a := range l {
		out = append(out, a.String())
	}
	return out
}
