package sesnotify

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// parseFast is ParseBrief's fast path. It reads only notifications in the
// form SES and this relay write (valid UTF-8 and JSON, an object, exact
// field names, each once, strings without escapes, no nulls where a field
// is read) and answers ok=false for anything else, which ParseBrief then
// decodes with encoding/json. On what it accepts its answer is exactly
// encoding/json's (FuzzParseBrief compares the two on every input).
//
// Why: the worker decodes every mail's notification, and reflection-driven
// decoding of a 2 KB notification cost more than the rewrite (profile in
// docs/benchmarks.md). The input is validated first (json.Valid, ~1 GB/s),
// so the scanner below never meets malformed JSON.
func parseFast(b []byte) (*Notification, bool) {
	if !utf8.Valid(b) || !json.Valid(b) {
		return nil, false
	}
	s := scanner{b: b, str0: string(b)} // one copy; the fields are substrings of it
	n := &Notification{}
	ok := s.object(notificationFields, func(field int) bool {
		switch field {
		case 0: // notificationType
			return s.str(&n.NotificationType)
		case 1: // mail
			return s.mail(&n.Mail)
		case 2: // receipt
			n.Receipt = &Receipt{}
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
	return n, ok && s.i == len(b)
}

// The fields parseFast reads, by object (encoding/json's names).
var (
	notificationFields = []string{"notificationType", "mail", "receipt", "content", "bounce", "complaint"}
	mailFields         = []string{"timestamp", "source", "sourceArn", "sourceIp", "sendingAccountId", "messageId", "destination", "headersTruncated", "headers"}
	receiptFields      = []string{"timestamp", "processingTimeMillis", "recipients", "spamVerdict", "virusVerdict", "spfVerdict", "dkimVerdict", "dmarcVerdict", "dmarcPolicy", "action"}
	actionFields       = []string{"type", "topicArn", "bucketName", "objectKeyPrefix", "objectKey", "encoding"}
	verdictFields      = []string{"status"}
)

// scanner walks a document json.Valid accepted.
type scanner struct {
	b    []byte
	str0 string // b as a string
	i    int
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
	s.ws()
	if s.i == len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// rawString consumes a string and returns its content; escaped says
// whether it holds a backslash (its content then is not its value).
func (s *scanner) rawString() (content []byte, escaped bool) {
	start := s.i + 1
	j := start
	for {
		j += bytes.IndexByte(s.b[j:], '"')
		bs := 0 // backslashes before the quote: an odd count escapes it
		for p := j - 1; p >= start && s.b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			break
		}
		j++
	}
	s.i = j + 1
	return s.b[start:j], bytes.IndexByte(s.b[start:j], '\\') >= 0
}

// object consumes an object whose fields are names (at most 32), calling
// member with the index of each one present, the scanner at its value;
// member consumes the value or returns false. Other members are skipped.
func (s *scanner) object(names []string, member func(field int) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return true
	}
	var seen uint32
	for {
		s.ws()
		key, esc := s.rawString()
		if esc {
			return false
		}
		s.peek() // ':'
		s.i++
		s.ws()
		field := -1
		for f, n := range names {
			if n == string(key) {
				field = f
				break
			}
		}
		switch {
		case field < 0:
			if !s.unknown(key, names) {
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
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		}
	}
}

// unknown skips the value of a key that is none of names, and refuses one
// that matches a name but for case (encoding/json matches names without
// regard to case) or holds a non-ASCII byte (case folding beyond ASCII).
func (s *scanner) unknown(key []byte, names []string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for _, n := range names {
		if strings.EqualFold(n, string(key)) {
			return false
		}
	}
	s.skip()
	return true
}

// skip consumes any value.
func (s *scanner) skip() {
	switch s.peek() {
	case '"':
		s.rawString()
	case '{', '[':
		depth := 0
		for {
			switch s.b[s.i] {
			case '"':
				s.rawString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				return
			}
		}
	default:
		for s.i < len(s.b) && bytes.IndexByte([]byte(",}] \t\n\r"), s.b[s.i]) < 0 {
			s.i++
		}
	}
}

// str reads a string without escapes into *v.
func (s *scanner) str(v *string) bool {
	if s.peek() != '"' {
		return false
	}
	start := s.i + 1
	if _, esc := s.rawString(); esc {
		return false
	}
	*v = s.str0[start : s.i-1]
	return true
}

// strings reads an array of strings without escapes.
func (s *scanner) strings(v *[]string) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	l := []string{}
	if s.peek() == ']' {
		s.i++
		*v = l
		return true
	}
	for {
		var e string
		if !s.str(&e) {
			return false
		}
		l = append(l, e)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			*v = l
			return true
		}
	}
}

// raw copies any value but null.
func (s *scanner) raw(v *json.RawMessage) bool {
	if s.peek() == 'n' {
		return false
	}
	start := s.i
	s.skip()
	*v = append(json.RawMessage(nil), s.b[start:s.i]...)
	return true
}

func (s *scanner) timestamp(t *time.Time) bool {
	if s.peek() != '"' {
		return false
	}
	start := s.i
	if _, esc := s.rawString(); esc {
		return false
	}
	return t.UnmarshalJSON(s.b[start:s.i]) == nil
}

func (s *scanner) boolean(v *bool) bool {
	switch {
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		*v, s.i = true, s.i+4
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		*v, s.i = false, s.i+5
	default:
		return false
	}
	return true
}

func (s *scanner) mail(m *Mail) bool {
	return s.object(mailFields, func(field int) bool {
		switch field {
		case 0: // timestamp
			return s.timestamp(&m.Timestamp)
		case 1: // source
			return s.str(&m.Source)
		case 2: // sourceArn
			return s.str(&m.SourceArn)
		case 3: // sourceIp
			return s.str(&m.SourceIP)
		case 4: // sendingAccountId
			return s.str(&m.SendingAccountID)
		case 5: // messageId
			return s.str(&m.MessageID)
		case 6: // destination
			return s.strings(&m.Destination)
		case 7: // headersTruncated
			return s.boolean(&m.HeadersTruncated)
		case 8: // headers
			return s.headers(&m.HeadersListed)
		}
		return false
	})
}

// headers reads whether a header list has any element (each an object).
func (s *scanner) headers(listed *bool) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if s.peek() != '{' {
			return false
		}
		s.skip()
		*listed = true
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		}
	}
}

func (s *scanner) receipt(r *Receipt) bool {
	return s.object(receiptFields, func(field int) bool {
		switch field {
		case 0: // timestamp
			return s.timestamp(&r.Timestamp)
		case 1: // processingTimeMillis
			c := s.peek()
			if c != '-' && (c < '0' || c > '9') {
				return false
			}
			start := s.i
			s.skip()
			r.ProcessingTimeMillis = json.Number(s.b[start:s.i])
			return true
		case 2: // recipients
			return s.strings(&r.Recipients)
		case 3: // spamVerdict
			return s.verdict(&r.SpamVerdict)
		case 4: // virusVerdict
			return s.verdict(&r.VirusVerdict)
		case 5: // spfVerdict
			return s.verdict(&r.SPFVerdict)
		case 6: // dkimVerdict
			return s.verdict(&r.DKIMVerdict)
		case 7: // dmarcVerdict
			return s.verdict(&r.DMARCVerdict)
		case 8: // dmarcPolicy
			return s.str(&r.DMARCPolicy)
		case 9: // action
			return s.action(&r.Action)
		}
		return false
	})
}

func (s *scanner) verdict(v *Verdict) bool {
	return s.object(verdictFields, func(int) bool { return s.str(&v.Status) })
}

func (s *scanner) action(a *Action) bool {
	return s.object(actionFields, func(field int) bool {
		switch field {
		case 0: // type
			return s.str(&a.Type)
		case 1: // topicArn
			return s.str(&a.TopicArn)
		case 2: // bucketName
			return s.str(&a.BucketName)
		case 3: // objectKeyPrefix
			return s.str(&a.ObjectKeyPrefix)
		case 4: // objectKey
			return s.str(&a.ObjectKey)
		case 5: // encoding
			return s.str(&a.Encoding)
		}
		return false
	})
}
