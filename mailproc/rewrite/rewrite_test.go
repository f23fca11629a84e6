package rewrite

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

const alias = "shop@relay.example.com"

// rawMsg is a message split by the test's own reference splitter.
type rawMsg struct {
	fields [][]byte // raw fields, continuation lines and line endings included
	sep    []byte   // the empty line ending the header
	body   []byte   // everything after sep
}

// split is a reference header splitter, independent of the package's.
func split(t testing.TB, b []byte) rawMsg {
	t.Helper()
	var m rawMsg
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.Fatalf("no header separator")
		}
		line := b[:i+1]
		b = b[i+1:]
		switch {
		case string(line) == "\n" || string(line) == "\r\n":
			m.sep, m.body = line, b
			return m
		case line[0] == ' ' || line[0] == '\t':
			last := len(m.fields) - 1
			m.fields[last] = append(m.fields[last], line...)
		default:
			m.fields = append(m.fields, slices.Clone(line))
		}
	}
	t.Fatalf("no header separator")
	return m
}

func fieldName(f []byte) string {
	i := bytes.IndexByte(f, ':')
	return strings.ToLower(strings.TrimRight(string(f[:i]), " \t"))
}

var removedAlways = []string{"return-path", "sender", "bcc", "dkim-signature", "domainkey-signature", "arc-seal", "arc-message-signature", "arc-authentication-results",
	"disposition-notification-to", "return-receipt-to", "x-confirm-reading-to"}

var single = []string{"date", "from", "reply-to", "to", "cc", "message-id", "in-reply-to", "references", "subject", "mime-version", "content-type", "content-transfer-encoding"}

// refRepair is the reference for the line-break repair of a kept field:
// a CR not followed by LF becomes a space; in a CRLF header an LF not
// preceded by CR becomes CRLF.
func refRepair(f []byte, crlf bool) []byte {
	var out []byte
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case c == '\r' && !(i+1 < len(f) && f[i+1] == '\n'):
			out = append(out, ' ')
		case c == '\n' && crlf && !(i > 0 && f[i-1] == '\r'):
			out = append(out, "\r\n"...)
		default:
			out = append(out, c)
		}
	}
	return out
}

// crlfHeader reports whether the first header line ends in CRLF.
func crlfHeader(b []byte) bool {
	i := bytes.IndexByte(b, '\n')
	return i > 0 && b[i-1] == '\r'
}

// expectKept is the reference for which input fields survive, in order,
// and how (line breaks repaired as refRepair says).
func expectKept(in [][]byte, crlf bool) [][]byte {
	var kept [][]byte
	seen := map[string]bool{}
	for _, f := range in {
		n := fieldName(f)
		switch {
		case n == "" || slices.Contains(removedAlways, n) || strings.HasPrefix(n, "x-ses-"):
		case slices.Contains(single, n) && seen[n]:
		case n == "from":
			seen[n] = true
		default:
			seen[n] = true
			kept = append(kept, refRepair(f, crlf))
		}
	}
	return kept
}

type testCase struct {
	file         string
	reason       failure.Reason // failure reason expected, "" for success
	originalFrom string         // Result.OriginalFrom
	name         string         // From display name without the suffix
	replyTo      []string       // Reply-To addresses in the output
	replyToKept  bool
	absent       []string // field names that must not be in the output
	removed      int      // Result.Removed
	repaired     int      // Result.Repaired
}

var cases = []testCase{
	{file: "plain.eml", originalFrom: "alice@example.org", name: "Alice Example", replyTo: []string{"alice@example.org"}, absent: []string{"return-path"}, removed: 1},
	{file: "alternative.eml", originalFrom: "bob@example.net", name: "Bob B.", replyTo: []string{"bob@example.net"}},
	{file: "attachment.eml", originalFrom: "dora@example.org", name: "Dora", replyTo: []string{"dora@example.org"}},
	{file: "inline-image.eml", originalFrom: "eve@example.com", name: "Eve Designer", replyTo: []string{"eve@example.com"}},
	{file: "iso-2022-jp.eml", originalFrom: "taro@example.jp", name: "山田太郎", replyTo: []string{"taro@example.jp"}},
	{file: "windows-1252.eml", originalFrom: "rene@example.fr", name: "René Müller", replyTo: []string{"rene@example.fr"}},
	{file: "rfc2047.eml", originalFrom: "zoe@example.se", name: "Zoë 🚀 Ångström", replyTo: []string{"zoe@example.se"}},
	{file: "long-folded.eml", originalFrom: "frank@example.org", name: "Frank Folding With A Rather Long Display Name That Goes On And On", replyTo: []string{"frank@example.org"}, removed: 1},
	{file: "lf-only.eml", originalFrom: "gina@example.org", name: "Gina", replyTo: []string{"gina@example.org"}, absent: []string{"return-path", "dkim-signature"}, removed: 2},
	{file: "duplicates.eml", originalFrom: "henry@example.org", name: "Henry First", replyTo: []string{"henry-replies@example.org"}, replyToKept: true, absent: []string{"bcc"}, removed: 10},
	{file: "missing-from.eml", name: "", absent: []string{"return-path", "reply-to"}, removed: 1},
	{file: "dkim-signed.eml", originalFrom: "ivan@example.com", name: "Ivan", replyTo: []string{"ivan@example.com"},
		absent: []string{"return-path", "sender", "dkim-signature", "domainkey-signature", "arc-seal", "arc-message-signature", "arc-authentication-results",
			"x-ses-spam-verdict", "x-ses-virus-verdict", "x-ses-receipt", "x-ses-dkim-signature", "x-ses-configuration-set", "x-ses-message-tags"},
		removed: 14},
	{file: "injection.eml", originalFrom: "evil@example.net", name: "Evil Bcc: victim@example.com gnissecorp X", replyTo: []string{"evil@example.net"}, absent: []string{"bcc"}},
	{file: "unparseable-from.eml", name: "Totally <<broken>> Jörg sender", absent: []string{"reply-to"}},
	{file: "reply-to-utf8.eml", originalFrom: "juergen@example.de", name: "Jürgen Groß", replyTo: []string{"support@example.de", "team@example.de"}, replyToKept: true},
	{file: "multi-from.eml", originalFrom: "kim@example.org", name: "Kim", replyTo: []string{"kim@example.org", "lee@example.org"}, absent: []string{"sender"}, removed: 1},
	{file: "odd-body.eml", originalFrom: "odd@example.org", name: "odd@example.org", replyTo: []string{"odd@example.org"}},
	{file: "bare-cr.eml", originalFrom: "mallory@example.net", name: "Mallory", replyTo: []string{"mallory@example.net"}, absent: []string{"bcc"}, repaired: 3},
	{file: "read-receipt.eml", originalFrom: "nora@example.org", name: "Nora", replyTo: []string{"nora@example.org"},
		absent: []string{"disposition-notification-to", "return-receipt-to", "x-confirm-reading-to"}, removed: 3},
	{file: "malformed-no-separator.eml", reason: "malformed_mail"},
	{file: "malformed-header.eml", reason: "malformed_mail"},
	{file: "malformed-continuation.eml", reason: "malformed_mail"},
}

// TestTestdataCovered: every mail of the edge-case corpus has a case.
func TestTestdataCovered(t *testing.T) {
	files := mailtest.Corpus(mailtest.SetEdge)
	for _, f := range files {
		if !slices.ContainsFunc(cases, func(c testCase) bool { return c.file == f.Name }) {
			t.Errorf("%s has no test case", f.Name)
		}
	}
	if len(files) < 12 {
		t.Errorf("only %d testdata messages", len(files))
	}
}

func TestRewrite(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			in := mailtest.Mail(tc.file)
			var out bytes.Buffer
			res, err := Rewrite(&out, bytes.NewReader(in), Params{Alias: alias})
			if tc.reason != "" {
				if !failure.IsPermanent(err) || failure.ReasonOf(err) != tc.reason {
					t.Fatalf("err = %v, want permanent %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			checkOutput(t, in, out.Bytes(), res, tc)
		})
	}
}

func checkOutput(t *testing.T, in, outb []byte, res Result, tc testCase) {
	t.Helper()
	src, dst := split(t, in), split(t, outb)

	// Body and separator byte for byte.
	if !bytes.Equal(dst.body, src.body) {
		t.Errorf("body changed:\n got %q\nwant %q", dst.body, src.body)
	}
	if !bytes.Equal(dst.sep, src.sep) {
		t.Errorf("separator changed: %q -> %q", src.sep, dst.sep)
	}
	if res.BodyBytes != int64(len(src.body)) || res.HeaderBytes+res.BodyBytes != int64(len(outb)) {
		t.Errorf("byte counts %d+%d, output %d, body %d", res.HeaderBytes, res.BodyBytes, len(outb), len(src.body))
	}

	// Kept fields byte-identical and in order; only From and a new
	// Reply-To are added.
	var kept, added [][]byte
	for _, f := range dst.fields {
		n := fieldName(f)
		if n == "from" || n == "reply-to" && !tc.replyToKept {
			added = append(added, f)
			continue
		}
		kept = append(kept, f)
	}
	want := expectKept(src.fields, crlfHeader(in))
	if len(kept) != len(want) {
		t.Errorf("kept %d fields, want %d", len(kept), len(want))
	}
	for i := range min(len(kept), len(want)) {
		if !bytes.Equal(kept[i], want[i]) {
			t.Errorf("field %d:\n got %q\nwant %q", i, kept[i], want[i])
		}
	}
	wantRemoved := len(src.fields) - len(want)
	if slices.ContainsFunc(src.fields, func(f []byte) bool { return fieldName(f) == "from" }) {
		wantRemoved-- // the replaced From is not counted as removed
	}
	if res.Removed != wantRemoved {
		t.Errorf("Removed = %d, want %d", res.Removed, wantRemoved)
	}
	if res.Removed != tc.removed {
		t.Errorf("Removed = %d, case says %d", res.Removed, tc.removed)
	}
	if res.Repaired != tc.repaired {
		t.Errorf("Repaired = %d, case says %d", res.Repaired, tc.repaired)
	}
	if bad := bareBreak(outb[:len(outb)-len(dst.body)-len(dst.sep)], crlfHeader(in)); bad >= 0 {
		t.Errorf("bare line break left in the header at %d: %q", bad, outb[max(0, bad-20):bad+1])
	}
	for _, f := range dst.fields {
		n := fieldName(f)
		if slices.Contains(tc.absent, n) || slices.Contains(removedAlways, n) || strings.HasPrefix(n, "x-ses-") {
			t.Errorf("field %q should have been removed", f)
		}
	}

	// New fields use the input's line ending, and no line is overlong.
	crlf := bytes.HasSuffix(src.sep, []byte("\r\n"))
	for _, f := range added {
		for _, line := range bytes.SplitAfter(f, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if hasCR := bytes.HasSuffix(line, []byte("\r\n")); hasCR != crlf {
				t.Errorf("new field line %q: CRLF=%v, input CRLF=%v", line, hasCR, crlf)
			}
			if len(line) > 998 {
				t.Errorf("new field line of %d bytes", len(line))
			}
		}
	}

	// The output parses with go-message and says what we want.
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(outb)))
	if err != nil {
		t.Fatalf("output header does not parse: %v", err)
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	if n := len(mh.Values("From")); n != 1 {
		t.Fatalf("%d From fields", n)
	}
	from, err := mh.AddressList("From")
	if err != nil || len(from) != 1 {
		t.Fatalf("From %q: %v %v", mh.Get("From"), from, err)
	}
	wantName := strings.TrimSpace(tc.name + DefaultDisplaySuffix)
	if from[0].Address != alias || from[0].Name != wantName {
		t.Errorf("From = %q <%s>, want %q <%s>", from[0].Name, from[0].Address, wantName, alias)
	}
	if n := len(mh.Values("Reply-To")); n > 1 {
		t.Errorf("%d Reply-To fields", n)
	}
	var gotReply []string
	if mh.Has("Reply-To") {
		rt, err := mh.AddressList("Reply-To")
		if err != nil {
			t.Fatalf("Reply-To %q: %v", mh.Get("Reply-To"), err)
		}
		for _, a := range rt {
			gotReply = append(gotReply, a.Address)
		}
	}
	if !slices.Equal(gotReply, tc.replyTo) {
		t.Errorf("Reply-To = %v, want %v", gotReply, tc.replyTo)
	}
	if res.OriginalFrom != tc.originalFrom || res.ReplyToKept != tc.replyToKept {
		t.Errorf("Result %+v, want OriginalFrom %q ReplyToKept %v", res, tc.originalFrom, tc.replyToKept)
	}
	if res.OriginalName != tc.name {
		t.Errorf("OriginalName = %q, want %q", res.OriginalName, tc.name)
	}

	// Every MIME part has the same header and (decoded) bytes as before.
	inParts, outParts := mimeParts(t, in), mimeParts(t, outb)
	if !slices.Equal(inParts, outParts) {
		t.Errorf("MIME parts differ:\n got %q\nwant %q", outParts, inParts)
	}
	if len(outParts) == 0 {
		t.Error("no MIME parts")
	}
}

// mimeParts walks the message with mail.CreateReader and returns each
// part's header fields and decoded body.
func mimeParts(t *testing.T, msg []byte) []string {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("mail.CreateReader: %v", err)
	}
	defer r.Close()
	var parts []string
	for range 100 {
		p, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			return parts
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		var b strings.Builder
		var ph textproto.Header
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			ph = h.Header.Header
		case *mail.AttachmentHeader:
			ph = h.Header.Header
		default:
			t.Fatalf("part header of type %T", h)
		}
		for f := ph.Fields(); f.Next(); {
			// A single-part message's part header is the message header:
			// compare only what describes the content.
			if strings.HasPrefix(f.Key(), "Content-") {
				fmt.Fprintf(&b, "%s: %s\n", f.Key(), f.Value())
			}
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		parts = append(parts, b.String()+"\n"+string(body))
	}
	t.Fatal("too many parts")
	return nil
}

// TestSplitMatchesTextproto checks that the package's header split agrees
// with go-message's textproto.ReadHeader field by field (textproto turns
// every line ending into CRLF, so compare modulo that).
func TestSplitMatchesTextproto(t *testing.T) {
	for _, tc := range cases {
		if tc.reason != "" {
			continue
		}
		t.Run(tc.file, func(t *testing.T) {
			in := mailtest.Mail(tc.file)
			st := getState(bytes.NewReader(in))
			defer putState(st)
			if err := st.readHeader(maxHeaderBytes); err != nil {
				t.Fatal(err)
			}
			h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(in)))
			if err != nil {
				t.Fatal(err)
			}
			var tp []string
			for f := h.Fields(); f.Next(); {
				raw, err := f.Raw()
				if err != nil {
					t.Fatal(err)
				}
				tp = append(tp, string(raw))
			}
			var ours []string
			for _, f := range st.fields {
				ours = append(ours, toCRLF(st.hdr[f.start:f.end]))
			}
			if !slices.Equal(ours, tp) {
				t.Fatalf("split differs:\nours %q\n  tp %q", ours, tp)
			}
		})
	}
	// Both refuse the same broken blocks.
	for _, name := range []string{"malformed-header.eml", "malformed-continuation.eml"} {
		if _, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(mailtest.Mail(name)))); err == nil {
			t.Errorf("%s: textproto accepts it, we refuse it", name)
		}
	}
}

func toCRLF(b []byte) string {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func TestRewriteErrors(t *testing.T) {
	plain := mailtest.Mail("plain.eml")
	hdrLen := int64(bytes.Index(plain, []byte("\r\n\r\n")) + 4)
	long := "X-Long: " + strings.Repeat("a", 10000) + "\r\n"
	tests := []struct {
		name      string
		msg       string
		p         Params
		reason    failure.Reason // "" with permanent=false: must fail, transient
		permanent bool
		ok        bool
	}{
		{name: "empty message", msg: "", p: Params{Alias: alias}, reason: "malformed_mail", permanent: true},
		{name: "only header no newline", msg: "From: a@b.example", p: Params{Alias: alias}, reason: "malformed_mail", permanent: true},
		{name: "8-bit field name", msg: "Fr\xf6m: a@b.example\r\n\r\nx", p: Params{Alias: alias}, reason: "malformed_mail", permanent: true},
		{name: "space in field name", msg: "X Y: z\r\n\r\nx", p: Params{Alias: alias}, reason: "malformed_mail", permanent: true},
		{name: "empty header", msg: "\r\nbody", p: Params{Alias: alias}, ok: true},
		{name: "long header line", msg: long + "From: a@b.example\r\n\r\nbody", p: Params{Alias: alias}, ok: true},
		{name: "header over 1 MiB", msg: "X-A: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n", p: Params{Alias: alias}, reason: "malformed_mail", permanent: true},
		{name: "max bytes exact", msg: string(plain), p: Params{Alias: alias, MaxBytes: int64(len(plain))}, ok: true},
		{name: "max bytes body", msg: string(plain), p: Params{Alias: alias, MaxBytes: int64(len(plain)) - 1}, reason: "message_too_large", permanent: true},
		{name: "max bytes header", msg: string(plain), p: Params{Alias: alias, MaxBytes: hdrLen - 1}, reason: "message_too_large", permanent: true},
		{name: "max bytes header exact", msg: string(plain[:hdrLen]), p: Params{Alias: alias, MaxBytes: hdrLen}, ok: true},
		{name: "max bytes 1 MiB header", msg: "X-A: " + strings.Repeat("a", maxHeaderBytes) + "\r\n\r\n", p: Params{Alias: alias, MaxBytes: maxHeaderBytes}, reason: "message_too_large", permanent: true},
		// An invalid alias comes from the recipient (a catch-all hit):
		// permanent, retrying cannot make it valid.
		{name: "no alias", msg: string(plain), p: Params{}, reason: "invalid_recipient", permanent: true},
		{name: "alias injection", msg: string(plain), p: Params{Alias: "shop@relay.example.com>\r\nBcc: x@y.example"}, reason: "invalid_recipient", permanent: true},
		{name: "alias with name", msg: string(plain), p: Params{Alias: "Shop <shop@relay.example.com>"}, reason: "invalid_recipient", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := Rewrite(&out, strings.NewReader(tt.msg), tt.p)
			if tt.ok {
				if err != nil {
					t.Fatalf("Rewrite: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Rewrite succeeded")
			}
			if failure.IsPermanent(err) != tt.permanent {
				t.Fatalf("err %v: permanent = %v, want %v", err, failure.IsPermanent(err), tt.permanent)
			}
			if tt.permanent && failure.ReasonOf(err) != tt.reason {
				t.Fatalf("reason %q, want %q (%v)", failure.ReasonOf(err), tt.reason, err)
			}
		})
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return len(p), nil
}

func TestRewriteIOErrors(t *testing.T) {
	plain := mailtest.Mail("plain.eml")
	boom := errors.New("connection reset")
	// Reading fails inside the header, and inside the body: transient.
	for _, n := range []int{10, len(plain) - 5} {
		r := io.MultiReader(bytes.NewReader(plain[:n]), iotest.ErrReader(boom))
		_, err := Rewrite(io.Discard, r, Params{Alias: alias})
		if !errors.Is(err, boom) || failure.IsPermanent(err) {
			t.Errorf("read error after %d bytes: %v", n, err)
		}
	}
	// Writing fails on the header, and on the body.
	for _, n := range []int{0, 1} {
		_, err := Rewrite(&failWriter{n: n}, bytes.NewReader(plain), Params{Alias: alias})
		if err == nil || failure.IsPermanent(err) {
			t.Errorf("write error after %d writes: %v", n, err)
		}
	}
	// One byte at a time reads give the same result.
	var a, b bytes.Buffer
	if _, err := Rewrite(&a, bytes.NewReader(plain), Params{Alias: alias}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rewrite(&b, iotest.OneByteReader(bytes.NewReader(plain)), Params{Alias: alias}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("output depends on read sizes")
	}
}

func TestDisplayName(t *testing.T) {
	tests := []struct {
		name   string
		from   string
		suffix string
		want   string // decoded From display name
	}{
		{"custom suffix", "Alice <alice@example.org>", " (via shop)", "Alice (via shop)"},
		{"address only", "alice@example.org", "", "alice@example.org [via Relay]"},
		{"angle only", "<alice@example.org>", "", "alice@example.org [via Relay]"},
		{"quotes and backslash", `"Al \"The Pal\" \\o/" <al@example.org>`, "", `Al "The Pal" \o/ [via Relay]`},
		{"specials", `"Doe, John (Sales)" <j@example.org>`, "", "Doe, John (Sales) [via Relay]"},
		{"tab and spaces", "\"  A \t  B  \" <a@example.org>", "", "A B [via Relay]"},
		{"encoded newline", "=?utf-8?q?A=0D=0AB=0AC?= <a@example.org>", "", "A B C [via Relay]"},
		{"bidi override", "=?utf-8?q?A=E2=80=AEB=E2=81=A6C?= <a@example.org>", "", "ABC [via Relay]"},
		{"line separators", "=?utf-8?q?A=E2=80=A8B=E2=80=A9C?= <a@example.org>", "", "A B C [via Relay]"},
		{"nul and c1", "=?utf-8?q?A=00B=C2=85C=C2=9BD?= <a@example.org>", "", "AB CD [via Relay]"},
		{"backslash non-ascii", "=?utf-8?q?J=C3=B6rg=5Cx?= <a@example.org>", "", `Jörg\x [via Relay]`},
		{"specials non-ascii", "=?utf-8?q?J=C3=B6rg_=22=2C_=3Cx=3E_=28y=29?= <a@example.org>", "", `Jörg ", <x> (y) [via Relay]`},
		{"suffix sanitised", "A <a@example.org>", " [via\r\nBcc: x]", "A [via Bcc: x]"},
		{"truncated", strings.Repeat("é", 300) + " <a@example.org>", "", strings.Repeat("é", maxNameRunes) + "… [via Relay]"},
		{"long ascii", strings.Repeat("abcdefghij ", 30) + "<a@example.org>", "", strings.TrimSpace(strings.Repeat("abcdefghij ", 10)[:maxNameRunes]) + "… [via Relay]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := "From: " + tt.from + "\r\nSubject: x\r\n\r\nbody\r\n"
			var out bytes.Buffer
			res, err := Rewrite(&out, strings.NewReader(msg), Params{Alias: alias, DisplaySuffix: tt.suffix})
			if err != nil {
				t.Fatal(err)
			}
			h, err := textproto.ReadHeader(bufio.NewReader(&out))
			if err != nil {
				t.Fatal(err)
			}
			mh := mail.Header{Header: message.Header{Header: h}}
			from, err := mh.AddressList("From")
			if err != nil || len(from) != 1 {
				t.Fatalf("From %q: %v", mh.Get("From"), err)
			}
			if from[0].Name != tt.want || from[0].Address != alias {
				t.Fatalf("From name %q, want %q (field %q)", from[0].Name, tt.want, res.From)
			}
			raw, _ := h.Raw("From")
			for _, line := range strings.SplitAfter(string(raw), "\r\n") {
				if len(line) > 998 {
					t.Fatalf("From line of %d bytes", len(line))
				}
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"Alice", 0, "Alice"},
		{"  Alice   Bob  ", 0, "Alice Bob"},
		{"A\r\nB", 0, "A B"},
		{"A\x00B\x7fC", 0, "ABC"},
		{"A\u2028B\u2029C", 0, "A B C"},
		{"A\u202eB\u200bC\ufeffD", 0, "ABCD"},
		{"👩\u200d💻", 0, "👩\u200d💻"},
		{"bad \xff utf8", 0, "bad \ufffd utf8"},
		{"abcdef", 3, "abc…"},
		{"ab cdef", 3, "ab…"},
		{"ab cdef", 4, "ab c…"},
		{"abc", 3, "abc"},
		{"\r\n\t", 0, ""},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.max); got != tt.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, name, addr string
		err            bool
	}{
		{"Alice <alice@example.org>", "Alice", "alice@example.org", false},
		{"alice@example.org", "", "alice@example.org", false},
		{`"Doe, John" <j@example.org>`, "Doe, John", "j@example.org", false},
		{"=?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>", "André", "andre@example.fr", false},
		{"=?windows-1252?Q?=93Q=94?= <q@example.org>", "\u201cQ\u201d", "q@example.org", false},
		{"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <y@example.jp>", "山田", "y@example.jp", false},
		{"=?utf-8?q?A=0D=0ABcc=3A_x?= <a@example.org>", "A Bcc: x", "a@example.org", false},
		{"A <a@example.org>, B <b@example.org>", "A", "a@example.org", false},
		{"Jürgen <j@example.de>", "Jürgen", "j@example.de", false},
		{"undisclosed-recipients:;", "", "", true},
		{"not an address", "", "", true},
		{"", "", "", true},
		{"<<>>", "", "", true},
	}
	for _, tt := range tests {
		name, addr, err := ParseAddress(tt.in)
		if (err != nil) != tt.err || name != tt.name || addr != tt.addr {
			t.Errorf("ParseAddress(%q) = %q, %q, %v; want %q, %q, err %v", tt.in, name, addr, err, tt.name, tt.addr, tt.err)
		}
	}
}

func TestAppendFieldFolding(t *testing.T) {
	v := `"` + strings.Repeat("x", 90) + `" <a@example.org>, b@example.org, "c d e" <c@example.org>`
	out := string(appendField(nil, "Reply-To", v, "\r\n"))
	if !strings.HasPrefix(out, `Reply-To: "`+strings.Repeat("x", 90)+`"`+"\r\n <a@example.org>,") {
		t.Fatalf("folded at the wrong place: %q", out)
	}
	if strings.Contains(out, `"c d`+"\r\n") || strings.Contains(out, `"c`+"\r\n") {
		t.Fatalf("folded inside a quoted string: %q", out)
	}
	unfolded := strings.ReplaceAll(strings.TrimSuffix(out, "\r\n"), "\r\n", "")
	if unfolded != "Reply-To: "+v {
		t.Fatalf("unfolding does not give the value back: %q", unfolded)
	}
}

// bareBreak returns the offset of the first bare CR in hdr, or with crlf of
// the first bare LF, or -1.
func bareBreak(hdr []byte, crlf bool) int {
	for i, c := range hdr {
		if c == '\r' && (i+1 == len(hdr) || hdr[i+1] != '\n') || c == '\n' && crlf && (i == 0 || hdr[i-1] != '\r') {
			return i
		}
	}
	return -1
}

func FuzzRewrite(f *testing.F) {
	for _, tc := range cases {
		f.Add(mailtest.Mail(tc.file))
	}
	f.Add([]byte("\r\n"))
	f.Add([]byte("From: \"a\\\" b\" <a@b>\nReply-To: x\n\nbody"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkHeaderPath(t, in) // Parse and Header.Rewrite give the same
		var out bytes.Buffer
		res, err := Rewrite(&out, bytes.NewReader(in), Params{Alias: alias, LoopMarker: "relay.example.com"})
		if err != nil {
			if !failure.IsPermanent(err) {
				t.Fatalf("in-memory input gave a transient error: %v", err)
			}
			return
		}
		if !bytes.HasPrefix(out.Bytes(), []byte(LoopHeader+": relay.example.com\r\n")) && !bytes.HasPrefix(out.Bytes(), []byte(LoopHeader+": relay.example.com\n")) {
			t.Fatalf("no loop marker on top: %.80q", out.Bytes())
		}
		src, dst := split(t, in), split(t, out.Bytes())
		if !bytes.Equal(src.body, dst.body) || !bytes.Equal(src.sep, dst.sep) {
			t.Fatalf("body changed")
		}
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("output header does not parse: %v\n%q", err, out.Bytes())
		}
		if n := len(h.Values("From")); n != 1 {
			t.Fatalf("%d From fields", n)
		}
		mh := mail.Header{Header: message.Header{Header: h}}
		from, err := mh.AddressList("From")
		if err != nil || len(from) != 1 || from[0].Address != alias {
			t.Fatalf("From %q does not parse to the alias: %v", mh.Get("From"), err)
		}
		if !res.ReplyToKept && res.ReplyTo != "" {
			rt, err := mh.AddressList("Reply-To")
			if err != nil || len(rt) == 0 {
				t.Fatalf("generated Reply-To %q does not parse: %v", mh.Get("Reply-To"), err)
			}
		}
		for _, fld := range dst.fields {
			if n := fieldName(fld); slices.Contains(removedAlways, n) || strings.HasPrefix(n, "x-ses-") {
				t.Fatalf("field %q kept", fld)
			}
		}
		if bad := bareBreak(out.Bytes()[:out.Len()-len(dst.body)-len(dst.sep)], crlfHeader(in)); bad >= 0 {
			t.Fatalf("bare line break left in the header at %d: %q", bad, out.Bytes())
		}
		if _, err := Examine(in); err != nil {
			t.Fatalf("Examine refuses what Rewrite accepts: %v", err)
		}
	})
}

// fastCases exercise fastMailbox's edges; TestFastMailbox compares each
// with net/mail.
var fastCases = []string{
	"a@b.example", "<a@b.example>", "Alice <a@b.example>", "Alice<a@b.example>", "Alice  <a@b.example>",
	`"Alice Example" <a@b.example>`, `"" <a@b.example>`, `"  padded  " <a@b.example>`, "John Q. Public <j@b.example>",
	". <a@b.example>", "A  B <a@b.example>", " Alice <a@b.example>", "Alice\t<a@b.example>", "a..b@c.example",
	".a@b.example", "a@b.example.", "a@b <c@d>", "A <a@b.example> ", "A <a@b.example>, B <b@b.example>",
	"A <a@b.example> (c)", `"a"b <a@b.example>`, "A <a.@b.example>", "A <@b.example>", "A <a@>", "A <a@b@c>",
	"=?utf-8?q?x?= <a@b.example>", "Jürgen <j@b.example>", "A\"B <a@b.example>", `"A\\B" <a@b.example>`,
}

func TestFastMailbox(t *testing.T) {
	answered := 0
	for _, s := range fastCases {
		name, addr, ok := fastMailbox(s)
		l, err := mail.ParseAddressList(s)
		if !ok {
			continue
		}
		answered++
		if err != nil || len(l) != 1 || l[0].Name != name || l[0].Address != addr {
			t.Errorf("fastMailbox(%q) = %q, %q; net/mail: %v %v", s, name, addr, l, err)
		}
	}
	if answered < 8 {
		t.Errorf("fast path answered only %d cases", answered)
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"Alice <alice@example.org>", "alice@example.org", `"Doe, John" <j@example.org>`,
		"=?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>", "=?utf-8?q?A=0D=0AB?= <a@example.org>",
		"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <y@example.jp>", "A <a@example.org>, B <b@example.org>",
		"group: a@example.org;", "<<>>", `"\"" <"x y"@example.org>`, "a@[127.0.0.1]",
	} {
		f.Add(s)
	}
	for _, s := range fastCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// The fast path agrees with the full parser wherever it answers.
		if fn, fa, ok := fastMailbox(s); ok {
			l, err := mail.ParseAddressList(s)
			if err != nil || len(l) != 1 || l[0].Name != fn || l[0].Address != fa {
				t.Fatalf("fastMailbox(%q) = %q, %q; net/mail: %v %v", s, fn, fa, l, err)
			}
		}
		name, addr, err := ParseAddress(s)
		if err != nil {
			return
		}
		if addr == "" {
			t.Fatal("no address and no error")
		}
		if sanitize(name, 0) != name {
			t.Fatalf("name %q is not sanitised", name)
		}
		for _, r := range name {
			if r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u202e' {
				t.Fatalf("name %q holds %U", name, r)
			}
		}
		// What Rewrite writes from it parses back to the same mailbox.
		formatted := formatAddress(name, addr)
		if !safeValue(formatted) {
			t.Fatalf("formatted %q is not a safe field value", formatted)
		}
		n2, a2, err := ParseAddress(formatted)
		if err != nil || a2 != addr || n2 != name {
			t.Fatalf("%q -> %q, %q -> %q: %q, %q, %v", s, name, addr, formatted, n2, a2, err)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		want uint16
	}{
		{"From", kindFrom}, {"FROM", kindFrom}, {"reply-TO", kindReplyTo}, {"Subject", kindSubject},
		{"DKIM-SIGNATURE", kindDrop}, {"Return-Path", kindDrop}, {"bcc", kindDrop}, {"Sender", kindDrop},
		{"ARC-Seal", kindDrop}, {"arc-message-signature", kindDrop}, {"ARC-Authentication-Results", kindDrop},
		{"X-SES-RECEIPT", kindDrop}, {"x-ses-configuration-set", kindDrop},
		{"X-SES-" + strings.Repeat("A", 40), kindDrop}, {"X-Sesame", kindOther}, {"X-SE", kindOther},
		{"Resent-From", kindOther}, {"Received", kindOther}, {"Authentication-Results", kindOther},
		{strings.Repeat("F", 40), kindOther}, {"", kindDrop},
	}
	for _, tt := range tests {
		if got := classify([]byte(tt.name)); got != tt.want {
			t.Errorf("classify(%q) = %b, want %b", tt.name, got, tt.want)
		}
	}
}

// TestOddFieldNames covers blanks before the colon (seen in the wild) and
// a field with an empty name.
func TestOddFieldNames(t *testing.T) {
	msg := "Subject : one\r\nFrom : A <a@example.org>\r\nSUBJECT: two\r\ndkim-signature : x\r\n: nameless\r\nX-Keep: y\r\n\r\nbody"
	var out bytes.Buffer
	res, err := Rewrite(&out, strings.NewReader(msg), Params{Alias: alias})
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject : one\r\n" +
		"From: \"A [via Relay]\" <shop@relay.example.com>\r\n" +
		"Reply-To: \"A\" <a@example.org>\r\n" +
		"X-Keep: y\r\n\r\nbody"
	if out.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", out.String(), want)
	}
	if res.Removed != 3 {
		t.Fatalf("Removed = %d, want 3", res.Removed)
	}
}
