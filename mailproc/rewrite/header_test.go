package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// examineStream is Examine as it was before Parse: the header block read
// from a reader into the pooled state (readHeader), the fields compared by
// name. FuzzParse holds Parse and Header.Facts to it.
func examineStream(raw []byte) (Facts, *state, error) {
	st := getState(bytes.NewReader(raw))
	if err := st.readHeader(maxHeaderBytes); err != nil {
		putState(st)
		if errors.Is(err, errHeaderTooLarge) {
			return Facts{}, nil, malformed("header block larger than %d bytes", maxHeaderBytes)
		}
		return Facts{}, nil, err
	}
	var f Facts
	var seenRP, seenAS, seenCT bool
	for _, fl := range st.fields {
		name := string(st.hdr[fl.start : fl.start+fl.nameLen])
		switch {
		case !seenRP && strings.EqualFold(name, "Return-Path"):
			seenRP = true
			v := strings.Map(func(r rune) rune {
				if r == ' ' || r == '\t' {
					return -1
				}
				return r
			}, st.value(fl))
			f.NullSender = v == "<>"
		case !seenAS && strings.EqualFold(name, "Auto-Submitted"):
			seenAS = true
			v := strings.ToLower(st.value(fl))
			if i := strings.IndexAny(v, "; \t("); i >= 0 {
				v = v[:i]
			}
			f.AutoSubmitted = v
		case !seenCT && strings.EqualFold(name, "Content-Type"):
			seenCT = true
			f.DeliveryReport = parseDeliveryReport(st.value(fl))
		case strings.EqualFold(name, LoopHeader):
			f.LoopMarkers = append(f.LoopMarkers, strings.ToLower(st.value(fl)))
		}
	}
	return f, st, nil
}

// headerParams are the Params FuzzParse compares the two paths with.
var headerParams = []Params{
	{Alias: alias},
	{Alias: alias, LoopMarker: "relay.example.com", Annotate: true, SubjectTag: "[ext]", DisplaySuffix: " (relay)"},
	{Alias: alias, LoopMarker: "relay.example.com", ReplyAddress: func(s string) (string, bool) {
		return fmt.Sprintf("r%d@relay.example.com", len(s)), true
	}},
	{Alias: alias, ReplyAddress: func(string) (string, bool) { return "", false }},
	{Alias: "bad alias"},
}

// sameErr reports whether two errors say the same (text and class).
func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error() && failure.IsPermanent(a) == failure.IsPermanent(b) && failure.ReasonOf(a) == failure.ReasonOf(b)
}

// checkHeaderPath holds Parse, Header.Facts, Header.Rewrite and
// Header.Reply to the reader-based path (examineStream, Rewrite, Reply) on
// in: same split, same errors, same Facts, byte-identical copies with the
// same Result; in itself is not modified.
func checkHeaderPath(t *testing.T, in []byte) {
	t.Helper()
	orig := slices.Clone(in)
	wantFacts, st, wantErr := examineStream(in)
	h, err := Parse(in)
	if !sameErr(err, wantErr) {
		t.Fatalf("Parse: %v, the reader path says %v", err, wantErr)
	}
	if err != nil {
		return
	}
	defer h.Release()
	if !bytes.Equal(h.st.hdr, st.hdr) || h.st.sep != st.sep || !slices.EqualFunc(h.st.fields, st.fields, func(a, b field) bool {
		return a.start == b.start && a.end == b.end && a.colon == b.colon && a.nameLen == b.nameLen && a.kind == b.kind && a.fact == b.fact
	}) {
		t.Fatalf("split differs:\n%+v %d\n%+v %d", h.st.fields, h.st.sep, st.fields, st.sep)
	}
	putState(st)
	if got := h.Facts(); got.NullSender != wantFacts.NullSender || got.AutoSubmitted != wantFacts.AutoSubmitted ||
		got.DeliveryReport != wantFacts.DeliveryReport || !slices.Equal(got.LoopMarkers, wantFacts.LoopMarkers) {
		t.Fatalf("Facts %+v, the reader path says %+v", got, wantFacts)
	}
	for round := range 2 { // a Header serves several copies
		for i, p := range headerParams {
			var want, got bytes.Buffer
			wres, werr := Rewrite(&want, bytes.NewReader(in), p)
			res, err := h.Rewrite(&got, p)
			if !sameErr(err, werr) || res != wres || !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("round %d params %d: Header.Rewrite %+v %v\n%q\nRewrite %+v %v\n%q", round, i, res, err, got.Bytes(), wres, werr, want.Bytes())
			}
		}
		var want, got bytes.Buffer
		wres, werr := Reply(&want, bytes.NewReader(in), replyParams())
		res, err := h.Reply(&got, replyParams())
		if !sameErr(err, werr) || res != wres || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("round %d: Header.Reply %+v %v\n%q\nReply %+v %v\n%q", round, res, err, got.Bytes(), wres, werr, want.Bytes())
		}
	}
	if !bytes.Equal(in, orig) {
		t.Fatal("the mail was modified")
	}
}

func TestHeaderMatchesReaderPath(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) { checkHeaderPath(t, mailtest.Mail(tc.file)) })
	}
	for _, in := range headerSeeds {
		checkHeaderPath(t, []byte(in))
	}
}

var headerSeeds = []string{
	"", "\r\n", "\n\nbody", "From: a@b.example", "From: a@b.example\r\n", " x: y\r\n\r\n", "X Y: z\r\n\r\n",
	"Return-Path: < >\r\nReturn-Path: <a@b>\r\n\r\n", "Return-Path:\r\n <\r\n >\r\n\r\n",
	"Auto-Submitted: Auto-Replied (x)\r\nauto-submitted: no\r\n\r\n",
	"Content-Type: multipart/report;\r\n report-type=delivery-status\r\nContent-Type: text/plain\r\n\r\n",
	"CONTENT-TYPE: Message/Global-Delivery-Status\n\n", "Content-Type: multipart/report; report-type=\"delivery-status\"; report-type=x\n\n",
	"X-Mailrelay-Loop: A.example\r\nx-mailrelay-loop :\tb\r\n  c\r\n\r\n", "From: Bob\rBcc: x <bob@b.example>\nSubject: a\r\n\r\n",
	"From: \"a\\\" b\" <a@b>\nReply-To: x\n\nbody", "Subject: [ext] hi\r\nFrom: <a@b.example>\r\n\r\n",
	multipartReply,
}

func TestHeaderMaxBytes(t *testing.T) {
	plain := mailtest.Mail("plain.eml")
	h, err := Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	for _, tt := range []struct {
		max    int64
		reason failure.Reason
	}{{0, ""}, {int64(len(plain)), ""}, {int64(len(plain)) - 1, failure.ReasonMessageTooLarge}, {10, failure.ReasonMessageTooLarge}} {
		var out bytes.Buffer
		_, err := h.Rewrite(&out, Params{Alias: alias, MaxBytes: tt.max})
		_, rerr := h.Reply(&out, ReplyParams{Alias: alias, To: "a@b.example", Destination: dest, MaxBytes: tt.max})
		for _, err := range []error{err, rerr} {
			if tt.reason == "" && err != nil || tt.reason != "" && (!failure.IsPermanent(err) || failure.ReasonOf(err) != tt.reason) {
				t.Errorf("MaxBytes %d: %v, want %q", tt.max, err, tt.reason)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range cases {
		f.Add(mailtest.Mail(tc.file))
	}
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkHeaderPath)
}

// formatAddressRef is formatAddress as it was before it wrote the quoted
// name and the address with one allocation.
func formatAddressRef(name, addr string) string {
	var a string
	if isSimpleAddr(addr) {
		a = "<" + addr + ">"
	} else {
		a = (&mail.Address{Address: addr}).String()
	}
	if name == "" {
		return a
	}
	ascii, qSafe := true, true
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
		}
	}
	if ascii {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(name); i++ {
			if name[i] == '"' || name[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(name[i])
		}
		b.WriteString(`" `)
		b.WriteString(a)
		return b.String()
	}
	if qSafe {
		return mime.QEncoding.Encode("utf-8", name) + " " + a
	}
	return mime.BEncoding.Encode("utf-8", name) + " " + a
}

func FuzzFormatAddress(f *testing.F) {
	for _, s := range [][2]string{{"", "a@b.example"}, {"Al \"x\" \\ b", "a@b.example"}, {"Jürgen", "j@b.example"},
		{"a,b", "a b@c.example"}, {"", "\"q\"@b"}, {"x\x01", "a@b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, addr string) {
		if got, want := formatAddress(name, addr), formatAddressRef(name, addr); got != want {
			t.Fatalf("formatAddress(%q, %q) = %q, was %q", name, addr, got, want)
		}
	})
}
