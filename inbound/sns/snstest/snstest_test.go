package snstest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/inbound/sns"
)

func TestSigner(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	if s.CertURL() != "" {
		t.Errorf("CertURL before Serve = %q", s.CertURL())
	}
	prefix, closeFn := s.Serve()
	defer closeFn()
	if !strings.HasPrefix(prefix, "http://127.0.0.1:") || s.CertURL() != prefix+CertPath {
		t.Fatalf("prefix %q cert %q", prefix, s.CertURL())
	}
	resp, err := http.Get(s.CertURL())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != string(s.CertPEM()) || s.Fetches() != 1 {
		t.Errorf("cert download: %d, %d bytes, fetches %d", resp.StatusCode, len(b), s.Fetches())
	}
	if err := s.Sign(&sns.Message{Type: sns.TypeNotification}, "3"); err == nil {
		t.Error("version 3 accepted")
	}

	v, err := sns.NewVerifier(sns.VerifierOptions{CertURLPrefixes: []string{prefix}})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"notification v1": s.Notification("arn:aws:sns:us-east-1:1:t", "id", "subj", "msg", "1"),
		"notification v2": s.Notification("arn:aws:sns:us-east-1:1:t", "id", "", "msg", "2"),
		"subscription":    s.SubscriptionConfirmation("arn:aws:sns:us-east-1:1:t", "http://127.0.0.1/?Action=ConfirmSubscription"),
		"unsubscribe":     s.UnsubscribeConfirmation("arn:aws:sns:us-east-1:1:t", "http://127.0.0.1/?Action=ConfirmSubscription"),
	} {
		m, err := sns.Parse(body)
		if err != nil {
			t.Fatalf("%s: Parse: %v", name, err)
		}
		if err := v.Verify(context.Background(), m); err != nil {
			t.Errorf("%s: Verify: %v", name, err)
		}
		if !strings.HasPrefix(m.Timestamp, "20") || !strings.HasSuffix(m.Timestamp, "Z") {
			t.Errorf("%s: timestamp %q", name, m.Timestamp)
		}
	}
}
