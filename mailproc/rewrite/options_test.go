package rewrite

import (
	"bytes"
	"strings"
	"testing"
)

func header(t *testing.T, out []byte) map[string][]string {
	t.Helper()
	m := split(t, out)
	h := map[string][]string{}
	for _, f := range m.fields {
		n := fieldName(f)
		v := string(f[bytes.IndexByte(f, ':')+1:])
		h[n] = append(h[n], strings.TrimSpace(strings.NewReplacer("\r\n ", " ", "\n ", " ").Replace(v)))
	}
	return h
}

func TestReplyAddressAnnotateTag(t *testing.T) {
	const (
		plain     = "From: Alice <alice@example.org>\r\nTo: shop@relay.example.com\r\nSubject: Hello\r\nX-Original-From: forged@example.com\r\nx-mailrelay-alias: forged@relay.example.com\r\n\r\nbody\r\n"
		withReply = "From: Alice <alice@example.org>\r\nReply-To: Desk <desk@example.org>, other@example.org\r\nSubject: [SPAM] Hello\r\n\r\nbody\r\n"
		noSubject = "From: bob@example.net\nMIME-Version: 1.0\nMIME-Version: 1.0\nContent-Type: text/plain\nContent-Type: text/html\nContent-Transfer-Encoding: 7bit\ncontent-transfer-encoding: base64\n\nbody\n"
		noFrom    = "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nbody\r\n"
	)
	replyOf := func(s string) (string, bool) {
		return "r1-" + strings.ReplaceAll(s, "@", ".") + "@relay.example.com", true
	}
	refuse := func(string) (string, bool) { return "", false }
	for _, tc := range []struct {
		name, in string
		p        Params
		want     map[string][]string // field -> values (unfolded); nil slice: absent
		sender   string              // Result.ReplySender
		removed  int
	}{
		{"reply address from From", plain, Params{ReplyAddress: replyOf},
			map[string][]string{"reply-to": {`"Alice [via Relay]" <r1-alice.example.org@relay.example.com>`}, "x-original-from": {"forged@example.com"}}, "alice@example.org", 0},
		{"reply address from Reply-To", withReply, Params{ReplyAddress: replyOf},
			map[string][]string{"reply-to": {`"Alice [via Relay]" <r1-desk.example.org@relay.example.com>`}}, "desk@example.org", 0},
		{"no reply address: original Reply-To kept", withReply, Params{ReplyAddress: refuse},
			map[string][]string{"reply-to": {"Desk <desk@example.org>, other@example.org"}}, "desk@example.org", 0},
		{"no reply address: From made Reply-To", plain, Params{ReplyAddress: refuse},
			map[string][]string{"reply-to": {`"Alice" <alice@example.org>`}}, "alice@example.org", 0},
		{"reply address that is no address", plain, Params{ReplyAddress: func(string) (string, bool) { return "a b@c", true }},
			map[string][]string{"reply-to": {`"Alice" <alice@example.org>`}}, "alice@example.org", 0},
		{"annotate replaces forged fields", plain, Params{Annotate: true},
			map[string][]string{"x-original-from": {"alice@example.org"}, "x-mailrelay-alias": {alias}}, "", 2},
		{"annotate without From", noFrom, Params{Annotate: true, ReplyAddress: replyOf},
			map[string][]string{"x-original-from": nil, "x-mailrelay-alias": {alias}, "reply-to": nil}, "", 0},
		{"subject tagged", plain, Params{SubjectTag: "[SPAM]"},
			map[string][]string{"subject": {"[SPAM] Hello"}}, "", 0},
		{"subject already tagged", withReply, Params{SubjectTag: "[spam]"},
			map[string][]string{"subject": {"[SPAM] Hello"}}, "", 0},
		{"subject made", noSubject, Params{SubjectTag: "[DMARC]"},
			map[string][]string{"subject": {"[DMARC]"}, "mime-version": {"1.0"}, "content-type": {"text/plain"}, "content-transfer-encoding": {"7bit"}}, "", 3},
		{"encoded subject tagged", noFrom, Params{SubjectTag: "[SPAM]"},
			map[string][]string{"subject": {"[SPAM] =?utf-8?q?Gr=C3=BC=C3=9Fe?="}}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Alias = alias
			var out bytes.Buffer
			res, err := Rewrite(&out, strings.NewReader(tc.in), tc.p)
			if err != nil {
				t.Fatal(err)
			}
			h := header(t, out.Bytes())
			for n, want := range tc.want {
				if strings.Join(h[n], "|") != strings.Join(want, "|") {
					t.Errorf("%s = %q, want %q", n, h[n], want)
				}
			}
			if res.ReplySender != tc.sender {
				t.Errorf("ReplySender = %q, want %q", res.ReplySender, tc.sender)
			}
			if res.Removed != tc.removed {
				t.Errorf("Removed = %d, want %d", res.Removed, tc.removed)
			}
			if !bytes.HasSuffix(out.Bytes(), []byte(tc.in[strings.Index(tc.in, "\nbody")+1:])) {
				t.Error("body lost")
			}
		})
	}
}

func TestSubjectTagChecked(t *testing.T) {
	for _, tag := range []string{"[SPAM]\r\nBcc: x@y.z", " [SPAM]", strings.Repeat("x", 65), "a\tb"} {
		if _, err := Rewrite(&bytes.Buffer{}, strings.NewReader("Subject: x\r\n\r\n"), Params{Alias: alias, SubjectTag: tag}); err == nil {
			t.Errorf("tag %q accepted", tag)
		}
	}
}
