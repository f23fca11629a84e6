package reply

import (
	"errors"
	"strings"
)

// The 6-bit symbols of a body: 0-25 'a'-'z', 26-35 '0'-'9', then the
// other characters common in addresses, an escape for any other byte (the
// next two symbols hold it, high bits first), and tokens frequent in
// sender addresses, so that more senders fit.
const (
	symEscape = 42
	firstTok  = 43
)

var symChars = "abcdefghijklmnopqrstuvwxyz0123456789.-_+@="

// tokens are written greedily, the longest first at each position; they
// are lower case, so they match domains (lower-cased) and lower-case local
// parts.
var tokens = [64 - firstTok]string{
	".com", ".net", ".org", ".io", "mail", "news", "noreply", "no-reply",
	"info", "reply", "bounce", "support", "notification", "newsletter",
	"email", "hello", "gmail.com", "outlook.com", "yahoo.com", "account",
	"marketing",
}

var charSym = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(symChars); i++ {
		t[symChars[i]] = int8(i)
	}
	return t
}()

// pack turns s into symbols.
func pack(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		best, bestLen := -1, 0
		for k, tok := range tokens {
			if len(tok) > bestLen && strings.HasPrefix(s[i:], tok) {
				best, bestLen = k, len(tok)
			}
		}
		if bestLen > 1 {
			out = append(out, byte(firstTok+best))
			i += bestLen
			continue
		}
		if c := charSym[s[i]]; c >= 0 {
			out = append(out, byte(c))
		} else {
			out = append(out, symEscape, s[i]>>4, s[i]&0x0f)
		}
		i++
	}
	return out
}

var errBadEscape = errors.New("truncated or invalid escape")

// unpack is the inverse of pack.
func unpack(syms []byte) (string, error) {
	var b strings.Builder
	for i := 0; i < len(syms); i++ {
		s := syms[i]
		switch {
		case int(s) < len(symChars):
			b.WriteByte(symChars[s])
		case s == symEscape:
			if i+2 >= len(syms) || syms[i+1] > 0x0f || syms[i+2] > 0x0f {
				return "", errBadEscape
			}
			b.WriteByte(syms[i+1]<<4 | syms[i+2])
			i += 2
		default:
			b.WriteString(tokens[s-firstTok])
		}
	}
	return b.String(), nil
}

const b32 = "abcdefghijklmnopqrstuvwxyz234567"

// fromBase32 is the value of a base32 digit of either case, or -1.
func fromBase32(c byte) int {
	switch {
	case 'a' <= c && c <= 'z':
		return int(c - 'a')
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case '2' <= c && c <= '7':
		return int(c-'2') + 26
	}
	return -1
}

// bitWriter collects bits, most significant first, and writes them as
// base32 digits (the last one padded with zero bits).
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc int
}

func (w *bitWriter) write(v uint32, bits int) {
	for bits > 0 {
		take := min(bits, 5-w.nacc%5)
		w.acc = w.acc<<take | uint64(v>>(bits-take))&(1<<take-1)
		w.nacc += take
		bits -= take
		if w.nacc == 5 {
			w.out = append(w.out, b32[w.acc])
			w.acc, w.nacc = 0, 0
		}
	}
}

func (w *bitWriter) base32() string {
	if w.nacc > 0 {
		w.write(0, 5-w.nacc)
	}
	return string(w.out)
}

// bitReader reads bits from base32 digits (already checked), most
// significant first; past the end it reads zeros.
type bitReader struct {
	s   string
	pos int // bit position
}

func (r *bitReader) read(bits int) uint32 {
	var v uint32
	for ; bits > 0; bits-- {
		var bit uint32
		if ch := r.pos / 5; ch < len(r.s) {
			bit = uint32(fromBase32(r.s[ch])>>(4-r.pos%5)) & 1
		}
		v = v<<1 | bit
		r.pos++
	}
	return v
}
