package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// ReplyParams configures Reply.
type ReplyParams struct {
	// Alias is the address the reply is sent from.
	Alias string
	// To is the original sender, where the reply goes.
	To string
	// Destination is the address of the alias's destination that wrote the
	// reply: it must appear nowhere in the copy.
	Destination string
	// MaxBytes, when > 0, is the largest input message accepted.
	MaxBytes int64
}

// maxScrubDepth bounds the nesting of multiparts Reply looks into.
const maxScrubDepth = 8

// Reply reads a reply that a destination of an alias sent to a reply
// address and writes the copy that goes from the alias to the original
// sender:
//   - From is Alias (no display name: the destination's name could tell who
//     is behind the alias) and To is To, each where the first original one
//     was; Reply-To, Cc addresses equal to Destination, and every other
//     field whose value holds Destination (case-insensitively) are removed,
//     and so are Received and X-Originating-IP (the destination's network),
//     OriginalFromHeader, AliasHeader, LoopHeader and whatever Rewrite
//     removes (Return-Path, Sender, Bcc, signatures, X-SES-*, read-receipt
//     requests, duplicates of single-instance fields).
//   - In the body, Destination is replaced by Alias in every text/plain part
//     (the whole body when it is text/plain) whose transfer encoding is 7bit,
//     8bit or binary (where it appears as written, not encoded): quoted
//     text such as "On Monday, Bob <bob@example.com> wrote:". Every other
//     byte, those of other parts, part headers and boundaries included, is
//     copied unchanged; HTML and quoted-printable or base64 parts are not
//     looked into.
//
// Errors are those of Rewrite.
func Reply(dst io.Writer, src io.Reader, p ReplyParams) (Result, error) {
	if err := checkReply(p); err != nil {
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
			return Result{}, failure.Permanent(failure.ReasonMessageTooLarge, fmt.Errorf("header block larger than %d bytes", limit))
		}
		return Result{}, err
	}
	var body []byte
	var err error
	if p.MaxBytes > 0 {
		body, err = io.ReadAll(io.LimitReader(st.br, p.MaxBytes-int64(len(st.hdr))+1))
		if err == nil && int64(len(st.hdr)+len(body)) > p.MaxBytes {
			return Result{}, failure.Permanent(failure.ReasonMessageTooLarge, fmt.Errorf("message larger than %d bytes", p.MaxBytes))
		}
	} else {
		body, err = io.ReadAll(st.br)
	}
	if err != nil {
		return Result{}, fmt.Errorf("read body: %w", err)
	}
	return st.reply(dst, body, p)
}

// checkReply checks the addresses of p.
func checkReply(p ReplyParams) error {
	for _, a := range []string{p.Alias, p.To} {
		if err := checkAlias(a); err != nil {
			return err
		}
	}
	if p.Destination == "" || !safeValue(p.Destination) {
		return fmt.Errorf("rewrite: invalid destination %q", p.Destination)
	}
	return nil
}

// reply writes the reply copy of the split header st.hdr and body to dst.
// body is not modified.
func (st *state) reply(dst io.Writer, body []byte, p ReplyParams) (Result, error) {
	var res Result
	res.From = formatAddress("", p.Alias)
	out := st.editReply(&res, p)
	ct, cte := st.first("Content-Type"), st.first("Content-Transfer-Encoding")
	body = scrub(body, ct, cte, p.Destination, p.Alias, 0)
	n, err := dst.Write(out)
	res.HeaderBytes = int64(n)
	if err != nil {
		return res, fmt.Errorf("write header: %w", err)
	}
	n, err = dst.Write(body)
	res.BodyBytes = int64(n)
	if err != nil {
		return res, fmt.Errorf("write body: %w", err)
	}
	return res, nil
}

// first returns the unfolded value of the first field called name, or "".
func (st *state) first(name string) string {
	for _, f := range st.fields {
		if strings.EqualFold(string(st.hdr[f.start:f.start+f.nameLen]), name) {
			return st.value(f)
		}
	}
	return ""
}

// editReply returns the header block of a reply (see Reply).
func (st *state) editReply(res *Result, p ReplyParams) []byte {
	eol := "\r\n"
	if first := st.hdr[:bytes.IndexByte(st.hdr, '\n')+1]; len(first) < 2 || first[len(first)-2] != '\r' {
		eol = "\n"
	}
	crlf := eol == "\r\n"
	out := st.out[:0]
	var seen uint16
	wroteFrom, wroteTo := false, false
	for _, f := range st.fields {
		name := st.hdr[f.start : f.start+f.nameLen]
		raw := st.hdr[f.start:f.end]
		k := f.kind
		dup := k&singleKinds != 0 && seen&k != 0
		seen |= k & singleKinds
		switch {
		case k == kindFrom && !dup:
			out = appendField(out, "From", res.From, eol)
			wroteFrom = true
			continue
		case k == kindTo && !dup:
			out = appendField(out, "To", formatAddress("", p.To), eol)
			wroteTo = true
			continue
		case k == kindCc && !dup:
			if v, ok := withoutAddress(st.value(f), p.Destination); ok {
				if v != "" && !containsFold([]byte(v), p.Destination) {
					out = appendField(out, "Cc", v, eol)
				} else {
					res.Removed++
				}
				continue
			}
		}
		if dup || k == kindDrop || k == kindAnnotation || k == kindFrom || k == kindTo || k == kindReplyTo || k == kindCc ||
			replyDrop(name) || containsFold(raw, p.Destination) {
			res.Removed++
			continue
		}
		if needsRepair(raw, crlf) {
			out = appendRepaired(out, raw, crlf)
			res.Repaired++
		} else {
			out = append(out, raw...)
		}
	}
	if !wroteFrom {
		out = appendField(out, "From", res.From, eol)
	}
	if !wroteTo {
		out = appendField(out, "To", formatAddress("", p.To), eol)
	}
	return append(out, st.hdr[st.sep:]...)
}

// replyDrop names the fields removed from replies besides Rewrite's.
func replyDrop(name []byte) bool {
	switch strings.ToLower(string(name)) {
	case "received", "x-originating-ip", strings.ToLower(LoopHeader):
		return true
	}
	return false
}

// withoutAddress returns the address list v without the mailboxes of addr.
// ok is false when v does not parse or holds no such mailbox.
func withoutAddress(v, addr string) (string, bool) {
	list, err := mail.ParseAddressList(v)
	if err != nil {
		return "", false
	}
	kept := list[:0]
	for _, a := range list {
		if !strings.EqualFold(a.Address, addr) {
			kept = append(kept, a)
		}
	}
	if len(kept) == len(list) {
		return "", false
	}
	s := formatList(kept)
	if !safeValue(s) {
		return "", true
	}
	return s, true
}

// containsFold reports whether b holds s, ASCII case-insensitively.
func containsFold(b []byte, s string) bool {
	return indexFold(b, s, 0) >= 0
}

func indexFold(b []byte, s string, from int) int {
	for i := from; i+len(s) <= len(b); i++ {
		if strings.EqualFold(string(b[i:i+len(s)]), s) {
			return i
		}
	}
	return -1
}

// scrub replaces old by repl in the plain-text parts of body (see Reply).
func scrub(body []byte, ct, cte, old, repl string, depth int) []byte {
	if !containsFold(body, old) {
		return body
	}
	mt, params := "text/plain", map[string]string(nil)
	if strings.TrimSpace(ct) != "" {
		var err error
		if mt, params, err = mime.ParseMediaType(ct); err != nil {
			return body
		}
	}
	switch enc := strings.ToLower(strings.TrimSpace(cte)); {
	case mt == "text/plain" && (enc == "" || enc == "7bit" || enc == "8bit" || enc == "binary"):
		return replaceAddress(body, old, repl)
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxScrubDepth:
		return scrubMultipart(body, params["boundary"], old, repl, depth)
	}
	return body
}

// scrubMultipart scrubs each part between the delimiter lines of boundary;
// the preamble, the delimiters, the part headers and the epilogue are kept
// byte for byte.
func scrubMultipart(body []byte, boundary, old, repl string, depth int) []byte {
	delim := []byte("--" + boundary)
	var starts []int // where each delimiter line starts
	for i := 0; ; {
		j := bytes.Index(body[i:], delim)
		if j < 0 {
			break
		}
		if at := i + j; at == 0 || body[at-1] == '\n' {
			starts = append(starts, at)
		}
		i += j + len(delim)
	}
	if len(starts) < 2 {
		return body
	}
	out := make([]byte, 0, len(body)+len(repl))
	out = append(out, body[:starts[0]]...)
	for i, s := range starts {
		lineEnd := bytes.IndexByte(body[s:], '\n')
		if i == len(starts)-1 || lineEnd < 0 {
			out = append(out, body[s:]...)
			break
		}
		partStart, partEnd := s+lineEnd+1, starts[i+1]
		if partEnd < partStart {
			out = append(out, body[s:partEnd]...)
			continue
		}
		// The line break before the next delimiter belongs to it.
		end := partEnd
		if end > partStart && body[end-1] == '\n' {
			end--
			if end > partStart && body[end-1] == '\r' {
				end--
			}
		}
		out = append(out, body[s:partStart]...)
		out = append(out, scrubPart(body[partStart:end], old, repl, depth+1)...)
		out = append(out, body[end:partEnd]...)
	}
	return out
}

// scrubPart scrubs one MIME part (its header kept as it is).
func scrubPart(part []byte, old, repl string, depth int) []byte {
	if !containsFold(part, old) {
		return part
	}
	st := getState(bytes.NewReader(part))
	defer putState(st)
	if err := st.readHeader(len(part)); err != nil {
		return part
	}
	h := len(st.hdr)
	ct, cte := st.first("Content-Type"), st.first("Content-Transfer-Encoding")
	scrubbed := scrub(part[h:], ct, cte, old, repl, depth)
	return append(append([]byte(nil), part[:h]...), scrubbed...)
}

// replaceAddress replaces every occurrence of addr in b (case-insensitive)
// that is a whole address, not part of a longer one, by repl.
func replaceAddress(b []byte, addr, repl string) []byte {
	var out []byte
	last := 0
	for i := 0; ; {
		j := indexFold(b, addr, i)
		if j < 0 {
			break
		}
		end := j + len(addr)
		if (j == 0 || !addrChar(b[j-1])) && (end == len(b) || !domainChar(b[end]) || b[end] == '.' && (end+1 == len(b) || !domainChar(b[end+1]))) {
			out = append(out, b[last:j]...)
			out = append(out, repl...)
			last = end
		}
		i = end
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// addrChar: a byte that can precede '@' in a local part.
func addrChar(c byte) bool { return atext[c] || c == '.' }

// domainChar: a byte that can continue a domain.
func domainChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.'
}
