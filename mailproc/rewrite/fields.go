package rewrite

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// formatList formats addresses for a Reply-To, names sanitised.
func formatList(addrs []*mail.Address) string {
	var b strings.Builder
	for i, a := range addrs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(formatAddress(sanitize(a.Name, maxNameRunes), a.Address))
	}
	return b.String()
}

// safeValue reports whether v can be written as a field value: no line
// breaks, NUL or other control characters except tab.
func safeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// appendField appends "name: value" followed by eol, folded so that lines
// stay within foldAt characters where possible. It folds only at a single
// space outside quoted strings, replacing it by eol+space, so unfolding gives
// back value and display names stay on one line.
func appendField(out []byte, name, value, eol string) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	lineLen := len(name) + 2
	emit := func(chunk string) {
		if chunk != "" && chunk[0] == ' ' && lineLen+len(chunk) > foldAt {
			out = append(out, eol...)
			lineLen = 0
		}
		out = append(out, chunk...)
		lineLen += len(chunk)
	}
	inQuote := false
	last := 0
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case inQuote && c == '\\':
			i++ // quoted pair
		case c == '"':
			inQuote = !inQuote
		case c == ' ' && !inQuote && i > last && value[i-1] != ' ':
			emit(value[last:i])
			last = i
		}
	}
	emit(value[last:])
	return append(out, eol...)
}

// needsRepair reports whether the raw field f holds a bare CR, or, when the
// header uses CRLF, a line ending in a bare LF. (Line breaks are found with
// bytes.IndexByte and counted with bytes.Count, not byte by byte: every
// kept field of every copy is checked.)
func needsRepair(f []byte, crlf bool) bool {
	if !crlf { // only a CR not followed by LF
		for i := 0; ; i++ {
			j := bytes.IndexByte(f[i:], '\r')
			if j < 0 {
				return false
			}
			if i += j; i+1 == len(f) || f[i+1] != '\n' {
				return true
			}
		}
	}
	// Every LF preceded by a CR, and no other CR.
	pairs := 0
	for i := 0; ; i++ {
		j := bytes.IndexByte(f[i:], '\n')
		if j < 0 {
			break
		}
		if i += j; i == 0 || f[i-1] != '\r' {
			return true
		}
		pairs++
	}
	return bytes.Count(f, []byte{'\r'}) != pairs
}

// appendRepaired appends the raw field f with every bare CR made a space
// and, when crlf, every bare LF made CRLF.
func appendRepaired(out, f []byte, crlf bool) []byte {
	for i, c := range f {
		switch {
		case c == '\r' && (i+1 == len(f) || f[i+1] != '\n'):
			out = append(out, ' ')
		case c == '\n' && crlf && (i == 0 || f[i-1] != '\r'):
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// checkMarker makes sure a loop marker is a token that cannot inject
// anything or need folding.
func checkMarker(m string) error {
	if len(m) > 255 {
		return fmt.Errorf("rewrite: loop marker of %d bytes", len(m))
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("rewrite: invalid loop marker %q", m)
		}
	}
	return nil
}

// checkAlias makes sure the alias is a plain addr-spec that cannot inject
// anything into the From field. An alias that is not is a permanent
// failure (failure.ReasonInvalidRecipient): it comes from the recipient,
// and retrying cannot make it valid.
func checkAlias(a string) error {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return failure.Permanent(failure.ReasonInvalidRecipient, fmt.Errorf("rewrite: invalid alias address %q", a))
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c <= ' ' || c > '~' || strings.IndexByte(`()<>[]:;\,"`, c) >= 0 {
			return failure.Permanent(failure.ReasonInvalidRecipient, fmt.Errorf("rewrite: invalid alias address %q", a))
		}
	}
	return nil
}

// CheckSubjectTag reports whether tag can be Params.SubjectTag: printable
// text of at most 64 bytes, without tabs or leading or trailing blanks.
func CheckSubjectTag(tag string) error { return checkTag(tag) }

// checkTag makes sure a subject tag is short printable text.
func checkTag(tag string) error {
	if len(tag) > 64 || !safeValue(tag) || strings.ContainsAny(tag, "\t") || strings.TrimSpace(tag) != tag {
		return fmt.Errorf("rewrite: invalid subject tag %q (printable, at most 64 bytes, no leading or trailing blanks)", tag)
	}
	return nil
}
