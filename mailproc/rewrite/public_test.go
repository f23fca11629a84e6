package rewrite

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// TestPublicCorpusDuplicates forwards the real mails of the public corpus
// that carry duplicated single-instance fields (MIME-Version twice): each
// copy has exactly one of every single-instance field the mail had, the
// first one byte for byte, the body byte-identical and the same MIME parts.
func TestPublicCorpusDuplicates(t *testing.T) {
	files := mailtest.Corpus(mailtest.SetPublic)
	if len(files) != 5 {
		t.Fatalf("%d public mails, want 5", len(files))
	}
	for _, f := range files {
		t.Run(f.Name, func(t *testing.T) {
			src := split(t, f.Raw)
			count := map[string]int{}
			for _, fl := range src.fields {
				count[fieldName(fl)]++
			}
			if count["mime-version"] != 2 {
				t.Fatalf("the sample has %d MIME-Version fields, want 2", count["mime-version"])
			}
			var out bytes.Buffer
			res, err := Rewrite(&out, bytes.NewReader(f.Raw), Params{Alias: alias, Annotate: true})
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			dst := split(t, out.Bytes())
			if !bytes.Equal(dst.body, src.body) {
				t.Error("body changed")
			}
			got := map[string][][]byte{}
			for _, fl := range dst.fields {
				got[fieldName(fl)] = append(got[fieldName(fl)], fl)
			}
			for _, n := range single {
				if n == "sender" {
					continue
				}
				want := min(count[n], 1)
				if n == "from" || n == "reply-to" && count["from"] > 0 {
					want = 1 // written by the rewrite
				}
				if len(got[n]) != want {
					t.Errorf("%d %s fields, want %d", len(got[n]), n, want)
				}
				if n == "from" || n == "reply-to" || count[n] == 0 {
					continue
				}
				first := src.fields[slices.IndexFunc(src.fields, func(fl []byte) bool { return fieldName(fl) == n })]
				if len(got[n]) == 1 && !bytes.Equal(got[n][0], first) {
					t.Errorf("%s: kept %q, want the first %q", n, got[n][0], first)
				}
			}
			if res.Removed < 1 {
				t.Errorf("Removed = %d", res.Removed)
			}
			if !slices.Equal(mimeParts(t, f.Raw), mimeParts(t, out.Bytes())) {
				t.Error("MIME parts differ")
			}
			if len(got[strings.ToLower(AliasHeader)]) != 1 || len(got[strings.ToLower(OriginalFromHeader)]) != 1 {
				t.Errorf("annotations: %q %q", got[strings.ToLower(AliasHeader)], got[strings.ToLower(OriginalFromHeader)])
			}
		})
	}
}
