package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// corpus returns every sample mail the project ships, by file name.
func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range mailtest.Corpus() {
		out[f.Name] = f.Raw
	}
	if len(out) < 30 {
		t.Fatalf("corpus has %d mails, want at least 30", len(out))
	}
	return out
}

// TestCorpusThroughRelay pushes every sample mail through the whole relay:
// well-formed ones must arrive with their body byte for byte, malformed ones
// must be dead-lettered with a reason, and nothing may be lost.
func TestCorpusThroughRelay(t *testing.T) {
	h := newHarness(t, nil)
	mails := corpus(t)
	names := make([]string, 0, len(mails))
	for n := range mails {
		names = append(names, n)
	}
	sort.Strings(names)
	byID := map[string]string{} // SES message id -> file
	malformed := 0
	for i, name := range names {
		sesID := fmt.Sprintf("corpus-%02d", i)
		byID[sesID] = name
		if strings.HasPrefix(name, "malformed") {
			malformed++
		}
		h.Deliver("sns-"+sesID, sesID, mails[name], "shop@relay.example.com")
	}
	want := len(names) - malformed
	sent := h.WaitSent(want)
	waitFor(t, "spool drained", func() bool { return h.Relay.Spool.Stats().Messages == 0 })

	// Match each forwarded copy to its source by the body (unique per file).
	forwarded := map[string]bool{}
	for _, s := range sent {
		// The source is the sample with exactly this body; among several
		// (empty bodies), the one with this Message-ID.
		var candidates []string
		body := s.Raw[headerEnd(s.Raw):]
		for _, name := range names {
			b := mails[name]
			if i := headerEnd(b); i >= 0 && bytes.Equal(b[i:], body) {
				candidates = append(candidates, name)
			}
		}
		src := ""
		if len(candidates) == 1 {
			src = candidates[0]
		} else if m, err := mail.CreateReader(bytes.NewReader(s.Raw)); err == nil {
			id, _ := m.Header.MessageID()
			for _, name := range candidates {
				if bytes.Contains(mails[name][:headerEnd(mails[name])], []byte("<"+id+">")) {
					src = name
				}
			}
		}
		if src == "" {
			t.Errorf("a forwarded mail matches no source body:\n%.300s", s.Raw)
			continue
		}
		if forwarded[src] {
			t.Errorf("%s forwarded twice", src)
		}
		forwarded[src] = true
		if !bytes.Contains(s.Raw, []byte("shop@relay.example.com")) {
			t.Errorf("%s: forwarded copy does not come from the alias", src)
		}
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "malformed") && !forwarded[name] {
			t.Errorf("%s was not forwarded", name)
		}
	}
	items, err := (&admin.Client{BaseURL: "http://" + h.Relay.AdminAddr}).List(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != malformed {
		t.Errorf("%d dead letters, want %d (the malformed samples)", len(items), malformed)
	}
	for _, it := range items {
		if !strings.HasPrefix(it.Reason, "malformed_mail") {
			t.Errorf("dead letter %s (%s): reason %q", it.ID, byID[strings.TrimPrefix(it.ID, "sns-")], it.Reason)
		}
	}
}

// headerEnd returns the offset of the body: after the first blank line.
func headerEnd(b []byte) int {
	crlf, lf := bytes.Index(b, []byte("\r\n\r\n")), bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf+2 <= lf+1):
		return crlf + 4
	case lf >= 0:
		return lf + 2
	}
	return -1
}
