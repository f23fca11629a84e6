package sesnotify

import "bytes"

// The decoders of the objects parseFast reads (fast.go).

func (s *scanner) mail(m *Mail) bool {
	return s.object(&mailFields, func(field int) bool {
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
	if s.open(']') {
		return true
	}
	for {
		if s.peek() != '{' || !s.header() {
			return false
		}
		*listed = true
		if more, ok := s.more(']'); !more {
			return ok
		}
	}
}

// header skips one element of a header list (at its '{'). The shape SES
// writes, {"name":"...","value":"..."} without blanks, is matched byte by
// byte, its two strings checked by string(); any other shape, or a string
// string() refuses, is skipped (or refused) by skip from the start.
func (s *scanner) header() bool {
	const open, mid, end = `{"name":`, `,"value":`, `}`
	start := s.i
	if bytes.HasPrefix(s.b[s.i:], []byte(open)) {
		s.i += len(open)
		if s.i < len(s.b) && s.b[s.i] == '"' {
			if _, _, _, ok := s.string(); ok && bytes.HasPrefix(s.b[s.i:], []byte(mid)) {
				s.i += len(mid)
				if s.i < len(s.b) && s.b[s.i] == '"' {
					if _, _, _, ok := s.string(); ok && s.i < len(s.b) && s.b[s.i] == '}' {
						s.i++
						return true
					}
				}
			}
		}
	}
	s.i = start
	return s.skip(2)
}

func (s *scanner) receipt(r *Receipt) bool {
	return s.object(&receiptFields, func(field int) bool {
		switch field {
		case 0: // timestamp
			return s.timestamp(&r.Timestamp)
		case 1: // processingTimeMillis
			return s.jsonNumber(&r.ProcessingTimeMillis)
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
	return s.object(&verdictFields, func(int) bool { return s.str(&v.Status) })
}

func (s *scanner) action(a *Action) bool {
	return s.object(&actionFields, func(field int) bool {
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
