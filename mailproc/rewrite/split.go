package rewrite

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The header split: readHeader from a reader, splitHeader in memory, both
// through addLine, which also classifies each field's name once.

// readHeader reads the header block, separator line included, into st.hdr
// and splits it into fields (see addLine).
func (st *state) readHeader(limit int) error {
	for {
		lineStart := len(st.hdr)
		line, err := st.br.ReadSlice('\n')
		st.hdr = append(st.hdr, line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(st.hdr) <= limit {
			line, err = st.br.ReadSlice('\n')
			st.hdr = append(st.hdr, line...)
		}
		if len(st.hdr) > limit {
			return errHeaderTooLarge
		}
		if errors.Is(err, io.EOF) {
			if len(st.hdr) == 0 {
				return malformed("empty message")
			}
			return malformed("no header/body separator")
		}
		if err != nil {
			return fmt.Errorf("read header: %w", err)
		}
		if done, err := st.addLine(lineStart); done || err != nil {
			return err
		}
	}
}

// splitHeader is readHeader for a mail held in memory: st.hdr becomes the
// header block of raw itself (capacity capped, so nothing is ever appended
// into raw), not a copy. It accepts, refuses and splits exactly as
// readHeader does (FuzzParse compares them).
func (st *state) splitHeader(raw []byte, limit int) error {
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\n')
		end := i + j + 1
		if j < 0 {
			end = len(raw)
		}
		if end > limit {
			return errHeaderTooLarge
		}
		if j < 0 {
			if len(raw) == 0 {
				return malformed("empty message")
			}
			return malformed("no header/body separator")
		}
		st.hdr = raw[:end:end]
		if done, err := st.addLine(i); done || err != nil {
			return err
		}
		i = end
	}
}

// addLine splits the complete line st.hdr[lineStart:] (it ends in '\n'),
// following textproto.ReadHeader: a line starting with a blank continues
// the previous field (and may not come first), every other line needs a
// ':' after a name of printable ASCII; the block ends at an empty line
// ("\r\n" or "\n"), where done is true.
func (st *state) addLine(lineStart int) (done bool, err error) {
	l := st.hdr[lineStart:]
	switch {
	case len(l) == 1 || len(l) == 2 && l[0] == '\r':
		st.sep = lineStart
		return true, nil
	case l[0] == ' ' || l[0] == '\t':
		if len(st.fields) == 0 {
			return false, malformed("header starts with a continuation line")
		}
		st.fields[len(st.fields)-1].end = len(st.hdr)
		return false, nil
	}
	colon := bytes.IndexByte(l, ':')
	if colon < 0 {
		return false, malformed("header line without colon: %q", truncate(l))
	}
	n := colon
	for n > 0 && (l[n-1] == ' ' || l[n-1] == '\t') {
		n--
	}
	for _, c := range l[:n] {
		if c < '!' || c > '~' {
			return false, malformed("invalid header field name: %q", truncate(l[:n]))
		}
	}
	kind, fact := classifyFact(l[:n])
	st.fields = append(st.fields, field{start: lineStart, end: len(st.hdr), colon: lineStart + colon, nameLen: n, kind: kind, fact: fact})
	return false, nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// Kinds of header fields the rewrite cares about. The single-instance ones
// double as bits in a "seen" mask.
const (
	kindOther uint16 = 0
	kindDrop  uint16 = 1 << iota
	kindFrom
	kindReplyTo
	kindDate
	kindTo
	kindCc
	kindMessageID
	kindInReplyTo
	kindReferences
	kindSubject
	kindMIMEVersion
	kindContentType
	kindContentTransferEncoding
	kindAnnotation // OriginalFromHeader, AliasHeader: dropped when annotating
)

const singleKinds = kindFrom | kindReplyTo | kindDate | kindTo | kindCc | kindMessageID | kindInReplyTo | kindReferences | kindSubject |
	kindMIMEVersion | kindContentType | kindContentTransferEncoding

// fact says which of the fields Facts reads a field is.
type fact uint8

const (
	factNone fact = iota
	factReturnPath
	factAutoSubmitted
	factContentType
	factLoop
)

// classify maps a field name to its kind, case-insensitively and without
// allocating.
func classify(name []byte) uint16 {
	k, _ := classifyFact(name)
	return k
}

// classifyFact is classify, also saying which field of Facts the name
// feeds (one lower-casing for both).
func classifyFact(name []byte) (uint16, fact) {
	if len(name) == 0 {
		return kindDrop, factNone
	}
	var buf [32]byte
	if len(name) > len(buf) {
		if hasPrefixFold(name, "x-ses-") {
			return kindDrop, factNone
		}
		return kindOther, factNone
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	lower := buf[:len(name)]
	switch string(lower) {
	case "from":
		return kindFrom, factNone
	case "reply-to":
		return kindReplyTo, factNone
	case "date":
		return kindDate, factNone
	case "to":
		return kindTo, factNone
	case "cc":
		return kindCc, factNone
	case "message-id":
		return kindMessageID, factNone
	case "in-reply-to":
		return kindInReplyTo, factNone
	case "references":
		return kindReferences, factNone
	case "subject":
		return kindSubject, factNone
	case "mime-version":
		return kindMIMEVersion, factNone
	case "content-type":
		return kindContentType, factContentType
	case "content-transfer-encoding":
		return kindContentTransferEncoding, factNone
	case "x-original-from", "x-mailrelay-alias":
		return kindAnnotation, factNone
	case "return-path":
		return kindDrop, factReturnPath
	case "auto-submitted":
		return kindOther, factAutoSubmitted
	case "x-mailrelay-loop": // LoopHeader
		return kindOther, factLoop
	case "sender", "bcc",
		"dkim-signature", "domainkey-signature",
		"arc-seal", "arc-message-signature", "arc-authentication-results",
		"disposition-notification-to", "return-receipt-to", "x-confirm-reading-to":
		return kindDrop, factNone
	}
	if bytes.HasPrefix(lower, []byte("x-ses-")) {
		return kindDrop, factNone
	}
	return kindOther, factNone
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}
