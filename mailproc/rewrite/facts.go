package rewrite

import (
	"bytes"
	"mime"
	"strings"
)

// Facts are what the header block of a received mail says about where it
// comes from, for the relay's loop rules (mailproc drops such mail instead
// of forwarding it).
type Facts struct {
	// NullSender: the first Return-Path is "<>". SES writes the envelope
	// sender (MAIL FROM) there on top of the mail it stores, so this is
	// the empty envelope sender of bounces and auto-replies.
	NullSender bool
	// AutoSubmitted is the keyword of the first Auto-Submitted field
	// (RFC 3834), lower-cased, without parameters or comments: "" when
	// absent or empty, "no" for mail a person sent, anything else for
	// automatic mail ("auto-replied", "auto-generated", ...).
	AutoSubmitted string
	// DeliveryReport: the top-level Content-Type is a delivery status
	// notification: multipart/report with report-type delivery-status or
	// global-delivery-status (RFC 3464, RFC 6533), or message/delivery-status
	// or message/global-delivery-status itself.
	DeliveryReport bool
	// LoopMarkers are the values of the LoopHeader fields, trimmed and
	// lower-cased, in order.
	LoopMarkers []string
}

// IsAutoSubmitted reports whether Auto-Submitted marks the mail automatic
// (present, not empty and not "no").
func (f Facts) IsAutoSubmitted() bool { return f.AutoSubmitted != "" && f.AutoSubmitted != "no" }

// HasLoopMarker reports whether the mail carries marker (case-insensitive).
func (f Facts) HasLoopMarker(marker string) bool {
	for _, m := range f.LoopMarkers {
		if strings.EqualFold(m, marker) {
			return true
		}
	}
	return false
}

// Examine reads the header block of raw with the same splitter as Rewrite
// (so it accepts and rejects the same mail; errors are those of Rewrite:
// failure.Permanent(failure.ReasonMalformedMail) for a broken header) and
// returns its Facts. Only the first Return-Path, Auto-Submitted and
// Content-Type count, as only they would be kept by a reader. It is Parse
// then Header.Facts: a caller that also rewrites the mail parses it once.
func Examine(raw []byte) (Facts, error) {
	h, err := Parse(raw)
	if err != nil {
		return Facts{}, err
	}
	defer h.Release()
	return h.Facts(), nil
}

// facts reads the Facts of the split header block.
func (st *state) facts() Facts {
	var f Facts
	var seenRP, seenAS, seenCT bool
	for _, fl := range st.fields {
		switch {
		case fl.fact == factNone:
		case fl.fact == factReturnPath && !seenRP:
			seenRP = true
			st.scratch = st.appendValue(st.scratch[:0], fl)
			f.NullSender = isNullPath(st.scratch)
		case fl.fact == factAutoSubmitted && !seenAS:
			seenAS = true
			v := strings.ToLower(st.value(fl))
			if i := strings.IndexAny(v, "; \t("); i >= 0 {
				v = v[:i]
			}
			f.AutoSubmitted = v
		case fl.fact == factContentType && !seenCT:
			seenCT = true
			st.scratch = st.appendValue(st.scratch[:0], fl)
			f.DeliveryReport = isDeliveryReportValue(st.scratch)
		case fl.fact == factLoop:
			f.LoopMarkers = append(f.LoopMarkers, strings.ToLower(st.value(fl)))
		}
	}
	return f
}

// isNullPath reports whether v is "<>" once every blank is removed.
func isNullPath(v []byte) bool {
	n := 0
	for _, c := range v {
		switch {
		case c == ' ' || c == '\t':
			continue
		case n == 0 && c == '<', n == 1 && c == '>':
			n++
		default:
			return false
		}
	}
	return n == 2
}

// isDeliveryReport reports whether a Content-Type value is a delivery
// status notification. A value mime cannot parse (duplicate parameters,
// stray bytes) is judged on its media type and a report-type parameter
// found by a plain search, so that a sloppy bounce is still recognised.
func isDeliveryReport(v string) bool { return isDeliveryReportValue([]byte(v)) }

// isDeliveryReportValue is isDeliveryReport on the value's bytes, without
// allocating for the common case.
func isDeliveryReportValue(v []byte) bool {
	// The common case first, without parsing: an ASCII media type that is
	// none of the three (mime and the plain search both take the text
	// before ';', trimmed and lower-cased, as the media type).
	if base, _, _ := bytes.Cut(v, []byte(";")); isASCII(base) {
		switch base = bytes.TrimSpace(base); {
		case bytes.EqualFold(base, []byte("message/delivery-status")), bytes.EqualFold(base, []byte("message/global-delivery-status")),
			bytes.EqualFold(base, []byte("multipart/report")):
		default:
			return false
		}
	}
	return parseDeliveryReport(string(v))
}

// parseDeliveryReport is isDeliveryReport without the shortcut.
func parseDeliveryReport(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	var reportType string
	if err != nil {
		lv := strings.ToLower(v)
		mt, _, _ = strings.Cut(lv, ";")
		mt = strings.TrimSpace(mt)
		if i := strings.Index(lv, "report-type"); i >= 0 {
			rest := strings.TrimLeft(lv[i+len("report-type"):], " \t=\"")
			reportType, _, _ = strings.Cut(rest, ";")
			reportType = strings.Trim(reportType, " \t\"")
		}
	} else {
		reportType = strings.ToLower(params["report-type"])
	}
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		return true
	case "multipart/report":
		return reportType == "delivery-status" || reportType == "global-delivery-status"
	}
	return false
}

func isASCII(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
