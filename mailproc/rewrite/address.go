package rewrite

import (
	"errors"
	"mime"
	"strings"
	"unicode"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // RFC 2047 words in any common charset
	"github.com/emersion/go-message/mail"
)

// ParseAddress parses the value of an original From field and returns its
// first mailbox: the display name (RFC 2047 encoded words decoded, in any
// charset go-message knows; sanitised like the display names Rewrite
// writes) and the addr-spec. A From field may list several mailboxes
// (RFC 5322 3.6.2); the others are ignored here.
func ParseAddress(s string) (name, addr string, err error) {
	addrs, err := parseMailboxes(strings.TrimSpace(s))
	if err != nil {
		return "", "", err
	}
	if len(addrs) == 0 {
		return "", "", errors.New("no mailbox in address list")
	}
	return sanitize(addrs[0].Name, 0), addrs[0].Address, nil
}

// decodeWords decodes RFC 2047 encoded words in unstructured text, for a
// From field that does not parse as an address. On error it returns s.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	dec := mime.WordDecoder{CharsetReader: message.CharsetReader}
	d, err := dec.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// sanitize makes s safe and tidy as a display name: control characters
// (C0 including NUL, DEL, C1) and format characters (bidi overrides and
// isolates, zero-width space, BOM, ...; the zero-width joiner of emoji
// sequences excepted) are removed; every kind of white space, CR, LF, tab,
// U+2028 and U+2029 included, becomes one space between words; invalid
// UTF-8 becomes U+FFFD. With maxRunes > 0 the result is cut to that many
// runes and ends in "…".
func sanitize(s string, maxRunes int) string {
	if cleanASCII(s, maxRunes) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	n := 0
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r) && r != '\u200d':
			continue
		}
		if maxRunes > 0 && n+boolInt(space) >= maxRunes {
			b.WriteRune('…')
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// cleanASCII reports whether s is already sanitised: printable ASCII, no
// leading, trailing or double spaces, and short enough.
func cleanASCII(s string, maxRunes int) bool {
	if maxRunes > 0 && len(s) > maxRunes {
		return false
	}
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == ' ' && s[i-1] == ' ' {
			return false
		}
	}
	return true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// formatAddress formats a mailbox for a From or Reply-To field. A printable
// ASCII name is written as a quoted string; any other name as RFC 2047
// encoded words: Q encoding when every ASCII character in it may appear in
// an encoded word in a phrase (RFC 2047 5(3)), else B encoding. (net/mail's
// Address.String Q-encodes names with a backslash, which its own parser then
// rejects.)
func formatAddress(name, addr string) string {
	simple := isSimpleAddr(addr)
	var a string // the address as written, when not simple (the simple one is "<" + addr + ">")
	if !simple {
		a = (&mail.Address{Address: addr}).String() // local part quoted as needed
	}
	if name == "" {
		if simple {
			return "<" + addr + ">"
		}
		return a
	}
	ascii, qSafe, quotes := true, true, 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 0x80:
			ascii = false
		case c < ' ' || c == 0x7f:
			ascii, qSafe = false, false
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte(" !*+-/", c) >= 0:
		default:
			qSafe = false
			if c == '"' || c == '\\' {
				quotes++
			}
		}
	}
	if ascii {
		// One allocation: the quoted name and the address written together.
		var b strings.Builder
		b.Grow(len(name) + quotes + len(addr) + len(a) + 5)
		b.WriteByte('"')
		for i := 0; i < len(name); i++ {
			if name[i] == '"' || name[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(name[i])
		}
		b.WriteString(`" `)
		if simple {
			b.WriteByte('<')
			b.WriteString(addr)
			b.WriteByte('>')
		} else {
			b.WriteString(a)
		}
		return b.String()
	}
	enc := mime.BEncoding
	if qSafe {
		enc = mime.QEncoding
	}
	if simple {
		return enc.Encode("utf-8", name) + " <" + addr + ">"
	}
	return enc.Encode("utf-8", name) + " " + a
}

// atext marks the RFC 5322 atext characters (printable ASCII except
// specials and '.').
var atext = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune(`()<>[]:;@\,".`, c)
	}
	return t
}()

// isDotAtom reports whether s is an RFC 5322 dot-atom-text: atext runs
// separated by single dots.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !atext[c] && (c != '.' || s[i-1] == '.') {
			return false
		}
	}
	return true
}

// isSimpleAddr reports whether addr is dot-atom@dot-atom, which needs no
// quoting.
func isSimpleAddr(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	return at > 0 && isDotAtom(addr[:at]) && isDotAtom(addr[at+1:])
}

// fastMailbox parses the common shapes of a From value without the
// allocations of net/mail: `local@domain`, `<local@domain>`,
// `Some Name <local@domain>` and `"Some Name" <local@domain>`, in plain
// ASCII, without comments, encoded words or escapes. ok is false for
// anything else, and the caller falls back to the full parser; where ok is
// true the result is what net/mail returns (FuzzParseAddress checks).
func fastMailbox(s string) (name, addr string, ok bool) {
	if strings.Contains(s, "=?") {
		return "", "", false
	}
	lt := strings.IndexByte(s, '<')
	if lt < 0 {
		return "", s, isSimpleAddr(s)
	}
	if s[len(s)-1] != '>' {
		return "", "", false
	}
	addr = s[lt+1 : len(s)-1]
	if !isSimpleAddr(addr) {
		return "", "", false
	}
	phrase := strings.TrimRight(s[:lt], " \t")
	switch {
	case phrase == "":
		return "", addr, true
	case phrase[0] == '"':
		if len(phrase) < 2 || phrase[len(phrase)-1] != '"' {
			return "", "", false
		}
		name = phrase[1 : len(phrase)-1]
		for i := 0; i < len(name); i++ {
			if c := name[i]; c < ' ' || c > '~' || c == '"' || c == '\\' {
				return "", "", false
			}
		}
		return name, addr, true
	}
	// Words of atext and dots, separated by single spaces: the name is the
	// phrase as it is. Anything else (tabs, runs of blanks) goes the slow way.
	for i := 0; i < len(phrase); i++ {
		c := phrase[i]
		if !atext[c] && c != '.' && (c != ' ' || i == 0 || phrase[i-1] == ' ') {
			return "", "", false
		}
	}
	return phrase, addr, true
}

// parseMailboxes parses a From value: the fast path for the common shapes,
// go-message's (net/mail with charset support) for the rest.
func parseMailboxes(s string) ([]*mail.Address, error) {
	if name, addr, ok := fastMailbox(s); ok {
		return []*mail.Address{{Name: name, Address: addr}}, nil
	}
	return mail.ParseAddressList(s)
}
