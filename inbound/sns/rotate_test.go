package sns_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// A new key behind the same certificate URL (LocalStack makes one at every
// restart) is picked up: a failed check against a key cached for over
// RefetchAfter downloads the certificate once more. A younger cache entry
// is not refetched, so forged signatures cannot force downloads.
func TestRotatedCertificateAtSameURL(t *testing.T) {
	oldKey, newKey := snstest.New(t), snstest.New(t)
	var serveNew atomic.Bool
	var fetches atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if serveNew.Load() {
			w.Write(newKey.CertPEM())
		} else {
			w.Write(oldKey.CertPEM())
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	certURL := srv.URL + "/sns/SimpleNotificationService-x.pem"

	now := time.Now()
	v, err := sns.NewVerifier(sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/sns/"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(s *snstest.Signer, id string) *sns.Message {
		m := &sns.Message{Type: "Notification", MessageId: id, TopicArn: "arn:aws:sns:us-east-1:1:t", Message: "{}",
			Timestamp: snstest.Timestamp(now), SigningCertURL: certURL}
		if err := s.Sign(m, "2"); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if err := v.Verify(t.Context(), msg(oldKey, "a")); err != nil {
		t.Fatalf("old key: %v", err)
	}
	serveNew.Store(true)
	// Cached for less than RefetchAfter: refused, no download.
	if err := v.Verify(t.Context(), msg(newKey, "b")); !errors.Is(err, sns.ErrSignature) {
		t.Fatalf("young cache entry: %v, want ErrSignature", err)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d downloads, want 1", n)
	}
	now = now.Add(sns.RefetchAfter + time.Second)
	if err := v.Verify(t.Context(), msg(newKey, "c")); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d downloads, want 2", n)
	}
	// A forgery right after the refetch costs no download.
	if err := v.Verify(t.Context(), msg(oldKey, "d")); !errors.Is(err, sns.ErrSignature) {
		t.Fatalf("forged: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d downloads after a forgery, want 2", n)
	}
}
