package rewrite

import (
	"errors"
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
// Content-Type count, as only they would be kept by a reader.
func Examine(raw []byte) (Facts, error) {
	st := getState(nil)
	st.rd.Reset(raw) // the pooled reader: nothing allocated per mail
	st.br.Reset(&st.rd)
	defer putState(st)
	if err := st.readHeader(maxHeaderBytes); err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			return Facts{}, malformed("header block larger than %d bytes", maxHeaderBytes)
		}
		return Facts{}, err
	}
	var f Facts
	var seenRP, seenAS, seenCT bool
	for _, fl := range st.fields {
		name := st.hdr[fl.start : fl.start+fl.nameLen]
		switch {
		case !seenRP && strings.EqualFold(string(name), "Return-Path"):
			seenRP = true
			v := strings.Map(func(r rune) rune {
				if r == ' ' || r == '\t' {
					return -1
				}
				return r
			}, st.value(fl))
			f.NullSender = v == "<>"
		case !seenAS && strings.EqualFold(string(name), "Auto-Submitted"):
			seenAS = true
			v := strings.ToLower(st.value(fl))
			if i := strings.IndexAny(v, "; \t("); i >= 0 {
				v = v[:i]
			}
			f.AutoSubmitted = v
		case !seenCT && strings.EqualFold(string(name), "Content-Type"):
			seenCT = true
			f.DeliveryReport = isDeliveryReport(st.value(fl))
		case strings.EqualFold(string(name), LoopHeader):
			f.LoopMarkers = append(f.LoopMarkers, strings.ToLower(st.value(fl)))
		}
	}
	return f, nil
}

// isDeliveryReport reports whether a Content-Type value is a delivery
// status notification. A value mime cannot parse (duplicate parameters,
// stray bytes) is judged on its media type and a report-type parameter
// found by a plain search, so that a sloppy bounce is still recognised.
func isDeliveryReport(v string) bool {
	// The common case first, without parsing: an ASCII media type that is
	// none of the three (mime and the plain search both take the text
	// before ';', trimmed and lower-cased, as the media type).
	if base, _, _ := strings.Cut(v, ";"); isASCII(base) {
		switch base = strings.TrimSpace(base); {
		case strings.EqualFold(base, "message/delivery-status"), strings.EqualFold(base, "message/global-delivery-status"),
			strings.EqualFold(base, "multipart/report"):
		default:
			return false
		}
	}
	return parseDeliveryReport(v)
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

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
