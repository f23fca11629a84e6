package sesnotify

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"time"
	"unicode/utf8"
)

// parseFast is ParseBrief's fast path. It reads only notifications in the
// form SES and this relay write (an object, exact field names, each once,
// kept strings without escapes and in valid UTF-8, no nulls where a field
// is read) and answers ok=false for anything else, which ParseBrief then
// decodes with encoding/json. On what it accepts its answer is exactly
// encoding/json's (FuzzParseBrief compares the two on every input).
//
// Why: the worker decodes every mail's notification, and reflection-driven
// decoding of a 2 KB notification cost more than the rewrite (profile in
// docs/benchmarks.md). It is one pass: the scanner checks the JSON grammar
// of everything it reads and of everything it skips (strings, escapes,
// control characters, numbers, literals, nesting, nothing but blanks after
// the value), so it accepts only what json.Valid accepts (FuzzScanValid
// compares the two) without running it first, which cost as much as the
// scan.
func parseFast(b []byte) (*Notification, bool) {
	a := &brief{}
	s := scanner{b: b, slots: a.slots[:]}
	n := &a.n
	ok := s.object(&notificationFields, func(field int) bool {
		switch field {
		case 0: // notificationType
			return s.str(&n.NotificationType)
		case 1: // mail
			return s.mail(&n.Mail)
		case 2: // receipt
			n.Receipt = &a.r
			return s.receipt(n.Receipt)
		case 3: // content
			return s.str(&n.Content)
		case 4: // bounce
			return s.raw(&n.Bounce)
		case 5: // complaint
			return s.raw(&n.Complaint)
		}
		return false
	})
	s.ws()
	if !ok || s.i != len(b) {
		return nil, false
	}
	s.done()
	return n, true
}

// brief holds what parseFast allocates but for the kept strings, in one
// allocation: the notification, its receipt (used only when there is one),
// and slots for the elements of short string lists (mail.destination and
// receipt.recipients usually hold one address each).
type brief struct {
	n     Notification
	r     Receipt
	slots [2]string
}

// scanValid reports whether b is one JSON value, by the scanner's grammar
// (json.Valid's but for nesting deeper than maxDepth).
func scanValid(b []byte) bool {
	s := scanner{b: b}
	if !s.skip(0) {
		return false
	}
	s.ws()
	return s.i == len(b)
}

// The fields parseFast reads, by object (encoding/json's names).
var (
	notificationFields = newFieldSet("notificationType", "mail", "receipt", "content", "bounce", "complaint")
	mailFields         = newFieldSet("timestamp", "source", "sourceArn", "sourceIp", "sendingAccountId", "messageId", "destination", "headersTruncated", "headers")
	receiptFields      = newFieldSet("timestamp", "processingTimeMillis", "recipients", "spamVerdict", "virusVerdict", "spfVerdict", "dkimVerdict", "dmarcVerdict", "dmarcPolicy", "action")
	actionFields       = newFieldSet("type", "topicArn", "bucketName", "objectKeyPrefix", "objectKey", "encoding")
	verdictFields      = newFieldSet("status")
)

// fieldSet is an object's field names (at most 32, each shorter than
// maxNameLen) with, for each length, the set of names of that length: a
// key is compared only with the names as long as it (none, for most keys
// of the objects skipped, one for most others).
type fieldSet struct {
	names []string
	byLen [maxNameLen]uint32
}

const maxNameLen = 32

func newFieldSet(names ...string) fieldSet {
	fs := fieldSet{names: names}
	for i, n := range names {
		fs.byLen[len(n)] |= 1 << i
	}
	return fs
}

// field returns the index of the name equal to key, or -1; and the set of
// names as long as key.
func (fs *fieldSet) field(key []byte) (int, uint32) {
	if len(key) >= maxNameLen {
		return -1, 0
	}
	same := fs.byLen[len(key)]
	for m := same; m != 0; m &= m - 1 {
		if f := bits.TrailingZeros32(m); fs.names[f] == string(key) {
			return f, same
		}
	}
	return -1, same
}

// maxDepth bounds the nesting the scanner skips; deeper documents go to
// encoding/json (whose own limit is 10000).
const maxDepth = 1000

// scanner walks a document, checking its grammar as it goes.
type scanner struct {
	b []byte
	i int
	// The strings kept are copied out of b at the end, into one string
	// (done): spans says where each goes. Past len(spans), all of b is
	// copied into str0 and the rest are substrings of it.
	spans [24]span
	ns    int
	str0  string
	// slots are where string lists go while they fit (brief.slots).
	slots []string
}

// span is a kept string b[start:end], for *dst.
type span struct {
	dst        *string
	start, end int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-blank byte (0 at the end).
func (s *scanner) peek() byte {
	if s.i < len(s.b) && s.b[s.i] > ' ' { // compact JSON: no blank to skip
		return s.b[s.i]
	}
	s.ws()
	if s.i == len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// open consumes the opening bracket of a container (at s.i) and, when the
// container is empty, its closing end; empty reports that.
func (s *scanner) open(end byte) (empty bool) {
	s.i++
	if s.peek() == end {
		s.i++
		return true
	}
	return false
}

// more consumes what follows a member or element: a ',' (more) or the
// container's closing end (not more); ok is false for anything else.
func (s *scanner) more(end byte) (more, ok bool) {
	switch s.peek() {
	case ',':
		s.i++
		return true, true
	case end:
		s.i++
		return false, true
	}
	return false, false
}

// special flags (high bit of each byte) the bytes of x a string scan must
// stop at: '"', '\\', controls below 0x20 and non-ASCII. The lowest flagged
// byte is exact (borrows only run upwards from a flagged byte).
func special(x uint64) uint64 {
	const lsb = 0x0101010101010101
	return ((x - lsb*0x20) | ((x ^ lsb*'"') - lsb) | ((x ^ lsb*'\\') - lsb) | x) & (lsb * 0x80)
}

// string consumes the string at s.i (its opening quote), checking its
// escapes and that it holds no control character, and returns the end of
// its content, whether it holds an escape, whether it holds a non-ASCII
// byte, and ok=false if it is not a well-formed string.
func (s *scanner) string() (end int, escaped, nonASCII, ok bool) {
	b := s.b
	i := s.i + 1
	for {
		for i+8 <= len(b) {
			if m := special(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, false, false, false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return i, escaped, nonASCII, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, false, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, false, false, false
				}
				i += 6
			default:
				return 0, false, false, false
			}
		case c < 0x20:
			return 0, false, false, false
		default: // non-ASCII, or a plain byte near the end
			nonASCII = nonASCII || c >= utf8.RuneSelf
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number consumes a number per the JSON grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return false
		}
		i = j
	}
	s.i = i
	return true
}

// digits returns the index of the first non-digit at or after i.
func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// literal consumes word (true, false or null).
func (s *scanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}

// object consumes an object whose fields are names (at most 32), calling
// member with the index of each one present, the scanner at its value;
// member consumes the value or returns false. Other members are skipped.
func (s *scanner) object(names *fieldSet, member func(field int) bool) bool {
	if s.peek() != '{' {
		return false
	}
	if s.open('}') {
		return true
	}
	var seen uint32
	for {
		if s.peek() != '"' {
			return false
		}
		start := s.i + 1
		end, esc, _, ok := s.string()
		if !ok || esc {
			return false
		}
		key := s.b[start:end]
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		field, same := names.field(key)
		switch {
		case field < 0:
			if !s.unknown(key, names, same) {
				return false
			}
		case seen&(1<<field) != 0:
			return false // a repeated name: encoding/json's rules decide
		default:
			seen |= 1 << field
			if !member(field) {
				return false
			}
		}
		if more, ok := s.more('}'); !more {
			return ok
		}
	}
}

// unknown skips the value of a key that is none of names, and refuses one
// that matches a name but for case (encoding/json matches names without
// regard to case) or holds a non-ASCII byte (case folding beyond ASCII).
// same is the set of names as long as key (fieldSet.field).
func (s *scanner) unknown(key []byte, names *fieldSet, same uint32) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for m := same; m != 0; m &= m - 1 { // ASCII both: folding keeps the length
		if strings.EqualFold(names.names[bits.TrailingZeros32(m)], string(key)) {
			return false
		}
	}
	return s.skip(1)
}

// skip consumes any value, checking its grammar; depth is the nesting of
// the containers around it.
func (s *scanner) skip(depth int) bool {
	switch s.peek() {
	case '"':
		_, _, _, ok := s.string()
		return ok
	case '{':
		if depth >= maxDepth {
			return false
		}
		if s.open('}') {
			return true
		}
		for {
			if s.peek() != '"' {
				return false
			}
			if _, _, _, ok := s.string(); !ok || s.peek() != ':' {
				return false
			}
			s.i++
			if !s.skip(depth + 1) {
				return false
			}
			if more, ok := s.more('}'); !more {
				return ok
			}
		}
	case '[':
		if depth >= maxDepth {
			return false
		}
		if s.open(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			if more, ok := s.more(']'); !more {
				return ok
			}
		}
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return s.number()
}

// keep sets *dst to b[start:end] (once the scan is done).
func (s *scanner) keep(dst *string, start, end int) {
	if s.str0 == "" && s.ns < len(s.spans) {
		s.spans[s.ns] = span{dst, start, end}
		s.ns++
		return
	}
	if s.str0 == "" {
		s.str0 = string(s.b)
	}
	*dst = s.str0[start:end]
}

// done copies the kept strings out of b, into one allocation.
func (s *scanner) done() {
	size := 0
	for _, sp := range s.spans[:s.ns] {
		size += sp.end - sp.start
	}
	var all strings.Builder
	all.Grow(size)
	for _, sp := range s.spans[:s.ns] {
		all.Write(s.b[sp.start:sp.end])
	}
	str, at := all.String(), 0
	for _, sp := range s.spans[:s.ns] {
		l := sp.end - sp.start
		*sp.dst = str[at : at+l]
		at += l
	}
}

// str reads a string without escapes, in valid UTF-8, into *v.
func (s *scanner) str(v *string) bool {
	start, end, ok := s.strSpan()
	if ok {
		s.keep(v, start, end)
	}
	return ok
}

// strSpan reads a string without escapes, in valid UTF-8, and returns
// where its content is in b.
func (s *scanner) strSpan() (start, end int, ok bool) {
	if s.peek() != '"' {
		return 0, 0, false
	}
	start = s.i + 1
	end, esc, nonASCII, ok := s.string()
	if !ok || esc || nonASCII && !utf8.Valid(s.b[start:end]) {
		return 0, 0, false // encoding/json decodes escapes and replaces invalid UTF-8
	}
	return start, end, true
}

// strings reads an array of strings without escapes.
func (s *scanner) strings(v *[]string) bool {
	if s.peek() != '[' {
		return false
	}
	if s.open(']') {
		*v = []string{}
		return true
	}
	// The elements are kept without a destination, set once the list is
	// made; past the spans (or once str0 is made), they are substrings of
	// str0, in l.
	first := s.ns
	var l []string
	for {
		start, end, ok := s.strSpan()
		if !ok {
			return false
		}
		switch {
		case l == nil && s.str0 == "" && s.ns < len(s.spans):
			s.spans[s.ns] = span{nil, start, end}
			s.ns++
		case l == nil:
			if s.str0 == "" {
				s.str0 = string(s.b)
			}
			l = make([]string, 0, s.ns-first+1)
			for _, sp := range s.spans[first:s.ns] {
				l = append(l, s.str0[sp.start:sp.end])
			}
			s.ns = first
			fallthrough
		default:
			l = append(l, s.str0[start:end])
		}
		more, ok := s.more(']')
		if !ok {
			return false
		}
		if more {
			continue
		}
		if l == nil {
			if k := s.ns - first; k <= len(s.slots) {
				l, s.slots = s.slots[:k:k], s.slots[k:]
			} else {
				l = make([]string, k)
			}
			for i := range l {
				s.spans[first+i].dst = &l[i]
			}
		}
		*v = l
		return true
	}
}

// raw copies any value but null; one holding invalid UTF-8 is refused
// (encoding/json replaces it in a RawMessage field).
func (s *scanner) raw(v *json.RawMessage) bool {
	if s.peek() == 'n' {
		return false
	}
	start := s.i
	if !s.skip(1) || !utf8.Valid(s.b[start:s.i]) {
		return false
	}
	*v = append(json.RawMessage(nil), s.b[start:s.i]...)
	return true
}

func (s *scanner) timestamp(t *time.Time) bool {
	if s.peek() != '"' {
		return false
	}
	start := s.i
	if _, esc, nonASCII, ok := s.string(); !ok || esc || nonASCII {
		return false
	}
	return t.UnmarshalJSON(s.b[start:s.i]) == nil
}

// jsonNumber reads a number, or a string holding one (encoding/json
// accepts both into a json.Number), into *v.
func (s *scanner) jsonNumber(v *json.Number) bool {
	if s.peek() != '"' {
		start := s.i
		if !s.number() {
			return false
		}
		s.keep((*string)(v), start, s.i)
		return true
	}
	start := s.i + 1
	end, esc, _, ok := s.string()
	if !ok || esc || end == start {
		return false
	}
	in := scanner{b: s.b[start:end]}
	if !in.number() || in.i != end-start {
		return false
	}
	s.keep((*string)(v), start, end)
	return true
}

func (s *scanner) boolean(v *bool) bool {
	switch {
	case s.literal("true"):
		*v = true
	case s.literal("false"):
		*v = false
	default:
		return false
	}
	return true
}
