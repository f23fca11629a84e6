// Package rewrite turns a received message into the copy the relay forwards.
//
// The contract: From becomes the alias address on the relay domain, with a
// display name that shows the original sender; Reply-To lets the recipient
// answer the original sender, through a reply address when the caller makes
// one (Params.ReplyAddress); To/Cc/Subject/Date and the threading headers
// are kept (the Subject optionally tagged, Params.SubjectTag); Return-Path,
// Sender, DKIM-Signature, read-receipt requests and duplicates of
// single-instance headers (MIME-Version and the Content-* fields included:
// SES refuses to send mail that has them) are removed; a bare CR in a kept
// field becomes a space; a loop marker (LoopHeader) and, with
// Params.Annotate, the original From address and the alias
// (OriginalFromHeader, AliasHeader) are added; the body (every MIME part) is
// passed through byte for byte.
//
// Only the header block is parsed. It is split into raw fields that keep
// their exact bytes (folding, whitespace, line endings), so every field that
// is kept is written back byte-identical; the body is then copied from the
// reader without being looked at. go-message's textproto.ReadHeader is not
// used for the split because it rewrites every line ending to CRLF (it
// reads lines with bufio.ReadLine and appends "\r\n"), which would change
// kept fields of LF-only mail; the split here accepts and rejects the same
// header blocks as textproto.ReadHeader (the tests compare the two).
//
// Rewrite and Reply read the mail from a reader. For a mail held in memory,
// Parse splits the header block once, in place, and the Header it returns
// serves the loop checks (Header.Facts) and every copy (Header.Rewrite,
// Header.Reply, byte for byte the same as Rewrite and Reply), the body
// written from the mail itself: one header pass and one copy of the body
// per copy sent.
package rewrite

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// DefaultDisplaySuffix is appended to the original sender's name in the new
// From display name when Params.DisplaySuffix is empty.
const DefaultDisplaySuffix = " [via Relay]"

// maxHeaderBytes bounds the header block we are willing to buffer. Real
// headers are a few KB; even long Received chains stay far below this.
const maxHeaderBytes = 1 << 20

// maxNameRunes bounds the original sender's display name shown in From and
// Reply-To, so a hostile name cannot produce an overlong header line.
const maxNameRunes = 100

// foldAt is the line length (RFC 5322 2.1.1 "SHOULD") at which generated
// fields are folded.
const foldAt = 78

// Params configures one rewrite.
type Params struct {
	// Alias is the address the copy is sent from (Route.Alias), a plain
	// addr-spec on the relay domain.
	Alias string
	// DisplaySuffix is appended to the original sender's name in the From
	// display name. Empty means DefaultDisplaySuffix.
	DisplaySuffix string
	// MaxBytes, when > 0, is the largest input message accepted; a larger
	// one fails with failure.Permanent(failure.ReasonMessageTooLarge).
	MaxBytes int64
	// LoopMarker, when not empty, is written as the value of a LoopHeader
	// field at the top of the copy (see LoopHeader). It must be a plain
	// token: printable ASCII without blanks, at most 255 bytes.
	LoopMarker string
	// ReplyAddress, when not nil, is asked for the address through which
	// the destination answers sender (the first address of the original
	// Reply-To, else of the original From). When it answers ok, Reply-To
	// is that address (with the From display name) and the original
	// Reply-To is not written; otherwise Reply-To is as without it.
	ReplyAddress func(sender string) (address string, ok bool)
	// Annotate writes OriginalFromHeader (the original From address, when
	// it parses) and AliasHeader (Alias) at the top of the copy; fields of
	// those names in the input are removed, so that a sender cannot set
	// them.
	Annotate bool
	// SubjectTag, when not empty, is put in front of the Subject (one
	// Subject is made when there is none), unless the Subject already
	// starts with it. It must be printable text of at most 64 bytes.
	SubjectTag string
}

// Fields written with Params.Annotate, so that users can filter on them.
const (
	// OriginalFromHeader holds the addr-spec of the original From.
	OriginalFromHeader = "X-Original-From"
	// AliasHeader holds the alias the mail was sent to.
	AliasHeader = "X-Mailrelay-Alias"
)

// LoopHeader names the field the relay adds to every copy it forwards, with
// Params.LoopMarker as its value (the relay uses the alias's domain,
// lower-cased: "X-Mailrelay-Loop: relay.example.com"). A mail that arrives
// already carrying the marker the relay would add has been through it
// before (an alias forwarding to an address that forwards back) and is not
// forwarded again. Other relays' markers are kept, like any other field.
const LoopHeader = "X-Mailrelay-Loop"

// Result describes what Rewrite did.
type Result struct {
	// OriginalFrom is the addr-spec of the (first) original From mailbox,
	// "" when From was missing or could not be parsed.
	OriginalFrom string
	// OriginalName is the sanitised name shown for the original sender
	// (its display name, else its address, else the sanitised raw From
	// text), without the suffix.
	OriginalName string
	// From is the value of the From field written.
	From string
	// ReplyTo is the (unfolded) value of the Reply-To field in the output,
	// "" when there is none.
	ReplyTo string
	// ReplyToKept is true when ReplyTo is the original message's Reply-To
	// field, false when it was made from the original From or is a reply
	// address.
	ReplyToKept bool
	// ReplySender is the address given to Params.ReplyAddress ("" when it
	// was not asked), ReplyAddress what it answered when ok.
	ReplySender, ReplyAddress string
	// Removed counts the header fields dropped (the replaced From not
	// counted).
	Removed int
	// Repaired counts the kept fields whose line breaks were neutralised
	// (a bare CR made a space, a bare LF line ending made CRLF).
	Repaired int
	// HeaderBytes and BodyBytes are the bytes written for the header block
	// (separator included) and for the body.
	HeaderBytes, BodyBytes int64
}

// Rewrite reads a message from src and writes the copy to forward to dst.
//
// Header fields are handled as follows:
//   - From is replaced by `"<original name or address> [via Relay]" <alias>`,
//     at the place of the first original From (at the end of the header
//     when there was none). Display names are sanitised (control, bidi and
//     line-separator characters removed) and RFC 2047 encoded when not
//     ASCII.
//   - Reply-To: the first original Reply-To is kept as it is; without one,
//     a Reply-To with the original From mailboxes is added after From. When
//     the original From is missing or unparseable no Reply-To is added and
//     the message is still forwarded.
//   - Removed: Return-Path, Sender, Bcc, DKIM-Signature, DomainKey-Signature,
//     ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results (the From
//     change breaks them and they would vouch for what is no longer the
//     message); all X-SES-* fields (the receipt headers describe the inbound
//     hop and are in the SES notification anyway; and SES gives meaning to
//     X-SES-CONFIGURATION-SET, X-SES-MESSAGE-TAGS, X-SES-SOURCE-ARN, ... on
//     sending, which a remote sender must not be able to set); the
//     read-receipt requests Disposition-Notification-To (RFC 8098),
//     Return-Receipt-To and X-Confirm-Reading-To (a receipt sent by the
//     destination's mail client would go from its real address to the
//     sender, revealing what the alias hides); fields with an empty name;
//     and every occurrence after the first of Date, From, Reply-To, To, Cc,
//     Message-ID, In-Reply-To, References and Subject (RFC 5322 3.6), and of
//     MIME-Version, Content-Type and Content-Transfer-Encoding (RFC 2045);
//     with Params.Annotate, OriginalFromHeader and AliasHeader.
//   - With Params.ReplyAddress, Reply-To is the reply address it gives (see
//     Params.ReplyAddress).
//   - With Params.SubjectTag, the first Subject starts with the tag.
//   - Line breaks are neutralised in every field that is kept (repaired,
//     not dropped, so no information is lost): a bare CR (one not followed
//     by LF) becomes a space, since some readers take it for a line break
//     and would see a field the relay never saw ("Subject: hi\rBcc: x"); and
//     when the header uses CRLF (its first line does) a line ending in a
//     bare LF gets its CR, so that every reader splits the header where
//     the rewrite did (a field after a bare LF was classified, and dropped
//     if it had to be, as a field of its own).
//   - Every other field is written byte-identical, in its original order.
//   - With Params.LoopMarker set, "X-Mailrelay-Loop: <marker>" (LoopHeader)
//     is written first, then the annotations.
//
// New fields use the line ending of the input's first header line. The
// header separator and everything after it are copied unchanged.
//
// A message without a header/body separator or with an unparseable header
// block fails with failure.Permanent(failure.ReasonMalformedMail); one over
// Params.MaxBytes with failure.Permanent(failure.ReasonMessageTooLarge). Errors
// reading src or writing dst are returned unclassified (transient). After an
// error dst may hold a partial message and must be discarded.
func Rewrite(dst io.Writer, src io.Reader, p Params) (Result, error) {
	suffix, err := checkParams(p)
	if err != nil {
		return Result{}, err
	}

	st := getState(src)
	defer putState(st)

	limit := maxHeaderBytes
	if p.MaxBytes > 0 && p.MaxBytes < int64(limit) {
		limit = int(p.MaxBytes)
	}
	if err := st.readHeader(limit); err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			if limit < maxHeaderBytes || p.MaxBytes == maxHeaderBytes {
				return Result{}, failure.Permanent(failure.ReasonMessageTooLarge, fmt.Errorf("message larger than %d bytes", p.MaxBytes))
			}
			return Result{}, failure.Permanent(failure.ReasonMalformedMail, fmt.Errorf("header block larger than %d bytes", maxHeaderBytes))
		}
		return Result{}, err
	}

	var res Result
	out := st.edit(&res, p, suffix)
	st.out = out
	n, err := dst.Write(out)
	res.HeaderBytes = int64(n)
	if err != nil {
		return res, fmt.Errorf("write header: %w", err)
	}

	if p.MaxBytes > 0 {
		remain := p.MaxBytes - int64(len(st.hdr))
		n, err := io.Copy(dst, io.LimitReader(st.br, remain+1))
		res.BodyBytes = n
		if err != nil {
			return res, fmt.Errorf("copy body: %w", err)
		}
		if n > remain {
			return res, failure.Permanent(failure.ReasonMessageTooLarge, fmt.Errorf("message larger than %d bytes", p.MaxBytes))
		}
		return res, nil
	}
	bn, err := io.Copy(dst, st.br)
	res.BodyBytes = bn
	if err != nil {
		return res, fmt.Errorf("copy body: %w", err)
	}
	return res, nil
}

// checkParams checks p and returns the display suffix to use.
func checkParams(p Params) (suffix string, err error) {
	if err := checkAlias(p.Alias); err != nil {
		return "", err
	}
	if err := checkMarker(p.LoopMarker); err != nil {
		return "", err
	}
	if err := checkTag(p.SubjectTag); err != nil {
		return "", err
	}
	if p.DisplaySuffix == "" {
		return DefaultDisplaySuffix, nil
	}
	return p.DisplaySuffix, nil
}

// field is one raw header field in state.hdr.
type field struct {
	start, end int    // raw bytes, line endings and continuation lines included
	colon      int    // index of the ':' ending the name
	nameLen    int    // length of the name, trailing blanks trimmed
	kind       uint16 // classify's answer for the name
	fact       fact   // what the name tells Facts
	action     action
}

type action uint8

const (
	keep action = iota
	drop
	replaceFrom // the first From: replaced by the new From (and Reply-To)
	tagSubject  // the first Subject, written with Params.SubjectTag in front
	replaced    // the original Reply-To, replaced by a reply address (not counted as removed)
)

// state is the per-call scratch space, pooled: the bufio.Reader and byte
// buffers are reused between messages.
type state struct {
	br      *bufio.Reader
	hdr     []byte  // the raw header block, separator included
	sep     int     // start of the separator line in hdr
	fields  []field // fields of hdr, in order
	out     []byte  // the rewritten header block
	scratch []byte  // unfolded values (value)
}

var statePool = sync.Pool{New: func() any {
	return &state{
		br:     bufio.NewReaderSize(nil, 4096),
		hdr:    make([]byte, 0, 4096),
		fields: make([]field, 0, 32),
		out:    make([]byte, 0, 4096),
	}
}}

func getState(src io.Reader) *state {
	st := statePool.Get().(*state)
	st.br.Reset(src)
	return st
}

// putState returns st to the pool, dropping buffers grown by an unusually
// large header so the pool does not pin them.
func putState(st *state) {
	st.br.Reset(nil)
	if cap(st.hdr) > maxKeepBytes {
		st.hdr = make([]byte, 0, 4096)
	}
	st.hdr = st.hdr[:0]
	st.shrink()
	statePool.Put(st)
}

// maxKeepBytes is the largest buffer a pooled state or Header keeps.
const maxKeepBytes = 64 << 10

// shrink empties st's output buffers, dropping those an unusually large
// header grew, so that a pool does not pin them.
func (st *state) shrink() {
	if cap(st.out) > maxKeepBytes {
		st.out = make([]byte, 0, 4096)
	}
	if cap(st.fields) > 1024 {
		st.fields = make([]field, 0, 32)
	}
	if cap(st.scratch) > maxKeepBytes {
		st.scratch = nil
	}
	st.out, st.fields = st.out[:0], st.fields[:0]
}

var errHeaderTooLarge = errors.New("header block too large")

func malformed(format string, args ...any) error {
	return failure.Permanent(failure.ReasonMalformedMail, fmt.Errorf(format, args...))
}

// value returns the unfolded value of f: continuation line breaks removed
// with the blanks around them collapsed to one space, as textproto does.
func (st *state) value(f field) string {
	st.scratch = st.appendValue(st.scratch[:0], f)
	return string(st.scratch)
}

// appendValue appends the unfolded value of f (see value) to b.
func (st *state) appendValue(b []byte, f field) []byte {
	v := st.hdr[f.colon+1 : f.end]
	start := len(b)
	for len(v) > 0 {
		i := bytes.IndexByte(v, '\n')
		var l []byte
		if i < 0 {
			l, v = v, nil
		} else {
			l, v = v[:i], v[i+1:]
		}
		l = bytes.TrimSuffix(l, []byte{'\r'})
		l = bytes.Trim(l, " \t")
		if len(l) == 0 {
			continue
		}
		if len(b) > start {
			b = append(b, ' ')
		}
		b = append(b, l...)
	}
	return b
}

// edit decides the fate of every field and returns the new header block.
func (st *state) edit(res *Result, p Params, suffix string) []byte {
	var seen uint16
	fromIdx, replyToIdx, subjectIdx := -1, -1, -1
	for i := range st.fields {
		f := &st.fields[i]
		k := f.kind
		switch {
		case k == kindDrop, k == kindAnnotation && p.Annotate:
			f.action = drop
		case k&singleKinds != 0 && seen&k != 0:
			f.action = drop
		case k == kindFrom:
			f.action, fromIdx = replaceFrom, i
		case k == kindReplyTo:
			f.action, replyToIdx = keep, i
		case k == kindSubject && p.SubjectTag != "":
			f.action, subjectIdx = tagSubject, i
		default:
			f.action = keep
		}
		seen |= k & singleKinds
		if f.action == drop {
			res.Removed++
		}
	}

	// The original sender: parseMailboxes, without its allocations for
	// the common single mailbox fastMailbox reads (fromOne alone).
	var fromAddrs []*mail.Address
	var fromOne mail.Address // the first mailbox
	parsed := false
	if fromIdx >= 0 {
		raw := st.value(st.fields[fromIdx])
		if name, addr, ok := fastMailbox(raw); ok {
			fromOne, parsed = mail.Address{Name: name, Address: addr}, true
		} else if addrs, err := mail.ParseAddressList(raw); err == nil && len(addrs) > 0 {
			fromAddrs, fromOne, parsed = addrs, *addrs[0], true
		}
		if parsed {
			res.OriginalFrom = fromOne.Address
			name := fromOne.Name
			if strings.TrimSpace(name) == "" {
				name = fromOne.Address
			}
			res.OriginalName = sanitize(name, maxNameRunes)
		} else {
			res.OriginalName = sanitize(decodeWords(raw), maxNameRunes)
		}
	}

	eol := "\r\n"
	if first := st.hdr[:bytes.IndexByte(st.hdr, '\n')+1]; len(first) < 2 || first[len(first)-2] != '\r' {
		eol = "\n"
	}

	display := sanitize(res.OriginalName+suffix, 0)
	res.From = formatAddress(display, p.Alias)
	if replyToIdx >= 0 {
		res.ReplyTo = st.value(st.fields[replyToIdx])
		res.ReplyToKept = true
	} else if parsed {
		if fromAddrs != nil {
			res.ReplyTo = formatList(fromAddrs)
		} else {
			res.ReplyTo = formatAddress(sanitize(fromOne.Name, maxNameRunes), fromOne.Address) // formatList of one
		}
		if !safeValue(res.ReplyTo) {
			res.ReplyTo = "" // cannot happen with formatAddress; never write it if it does
		}
	}
	if p.ReplyAddress != nil {
		st.replyThrough(res, p.ReplyAddress, replyToIdx, display)
	}

	out := st.out[:0]
	if p.LoopMarker != "" {
		out = appendField(out, LoopHeader, p.LoopMarker, eol)
	}
	if p.Annotate {
		if res.OriginalFrom != "" && safeValue(res.OriginalFrom) && len(res.OriginalFrom) <= 320 {
			out = appendField(out, OriginalFromHeader, res.OriginalFrom, eol)
		}
		out = appendField(out, AliasHeader, p.Alias, eol)
	}
	crlf := eol == "\r\n"
	added := false
	addNew := func() {
		out = appendField(out, "From", res.From, eol)
		if res.ReplyTo != "" && !res.ReplyToKept {
			out = appendField(out, "Reply-To", res.ReplyTo, eol)
		}
		added = true
	}
	appendKept := func(raw []byte) {
		if needsRepair(raw, crlf) {
			out = appendRepaired(out, raw, crlf)
			res.Repaired++
		} else {
			out = append(out, raw...)
		}
	}
	for _, f := range st.fields {
		switch f.action {
		case keep:
			appendKept(st.hdr[f.start:f.end])
		case tagSubject:
			if v := st.hdr[f.colon+1 : f.end]; hasTag(st.value(f), p.SubjectTag) {
				appendKept(st.hdr[f.start:f.end])
			} else {
				out = append(out, "Subject: "+p.SubjectTag...)
				if len(v) > 0 && v[0] != ' ' && v[0] != '\t' {
					out = append(out, ' ')
				}
				n := len(out)
				appendKept(v) // repaired like any kept field
				if n == len(out) {
					out = append(out, eol...) // cannot happen: v ends in a line break
				}
			}
		case replaceFrom:
			addNew()
		}
	}
	if !added {
		addNew()
	}
	if p.SubjectTag != "" && subjectIdx < 0 {
		out = appendField(out, "Subject", p.SubjectTag, eol)
	}
	return append(out, st.hdr[st.sep:]...)
}

// replyThrough makes Reply-To the reply address of the original reply
// target (first of the original Reply-To, else of From), when ask gives one.
func (st *state) replyThrough(res *Result, ask func(string) (string, bool), replyToIdx int, display string) {
	var target string
	if replyToIdx >= 0 {
		if addrs, err := parseMailboxes(st.value(st.fields[replyToIdx])); err == nil && len(addrs) > 0 {
			target = addrs[0].Address
		}
	}
	if target == "" {
		target = res.OriginalFrom
	}
	if target == "" {
		return
	}
	res.ReplySender = target
	addr, ok := ask(target)
	if !ok || checkAlias(addr) != nil {
		return
	}
	v := formatAddress(display, addr)
	if !safeValue(v) {
		return
	}
	res.ReplyAddress, res.ReplyTo, res.ReplyToKept = addr, v, false
	if replyToIdx >= 0 {
		st.fields[replyToIdx].action = replaced
	}
}

// hasTag reports whether the subject already starts with tag (a reply to
// tagged mail, or mail tagged upstream).
func hasTag(subject, tag string) bool {
	return len(subject) >= len(tag) && strings.EqualFold(subject[:len(tag)], tag)
}
