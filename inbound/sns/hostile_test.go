package sns_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// The signed Timestamp must lie within [now-MaxAge, now+MaxClockSkew]: a
// captured delivery replayed later is refused for good.
func TestTimestampWindow(t *testing.T) {
	signer := snstest.New(t)
	prefix := strings.TrimSuffix(signer.CertURL(), snstest.CertPath)
	// A fixed clock (within the test certificate's validity).
	now := time.Now().UTC().Truncate(time.Millisecond)
	tests := []struct {
		name   string
		maxAge time.Duration
		ts     string
		err    error
	}{
		{name: "now", ts: snstest.Timestamp(now)},
		{name: "one hour old (SNS's longest retry)", ts: snstest.Timestamp(now.Add(-time.Hour))},
		{name: "just under the default max age", ts: snstest.Timestamp(now.Add(-sns.DefaultMaxAge + time.Second))},
		{name: "just over the default max age", ts: snstest.Timestamp(now.Add(-sns.DefaultMaxAge - time.Second)), err: sns.ErrTimestamp},
		{name: "replayed 25 hours later", ts: snstest.Timestamp(now.Add(-25 * time.Hour)), err: sns.ErrTimestamp},
		{name: "slightly in the future", ts: snstest.Timestamp(now.Add(sns.MaxClockSkew - time.Second))},
		{name: "far in the future", ts: snstest.Timestamp(now.Add(sns.MaxClockSkew + time.Second)), err: sns.ErrTimestamp},
		{name: "configured max age", maxAge: 10 * time.Minute, ts: snstest.Timestamp(now.Add(-11 * time.Minute)), err: sns.ErrTimestamp},
		{name: "within configured max age", maxAge: 10 * time.Minute, ts: snstest.Timestamp(now.Add(-9 * time.Minute))},
		{name: "RFC 3339 without fraction", ts: now.Format(time.RFC3339)},
		{name: "unparseable", ts: "yesterday", err: sns.ErrTimestamp},
		{name: "empty", ts: "", err: sns.ErrTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{prefix}, MaxAge: tt.maxAge, Now: func() time.Time { return now }})
			m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x", Timestamp: tt.ts}
			if err := signer.Sign(m, "2"); err != nil {
				t.Fatal(err)
			}
			err := v.Verify(context.Background(), m)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.err) || retryable(err) {
				t.Fatalf("Verify: %v, want final %v", err, tt.err)
			}
		})
	}
	// The Timestamp is signed: moving a stale one forward breaks the signature.
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{prefix}, Now: func() time.Time { return now }})
	m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x", Timestamp: snstest.Timestamp(now.Add(-25 * time.Hour))}
	signer.Sign(m, "1")
	m.Timestamp = snstest.Timestamp(now)
	if err := v.Verify(context.Background(), m); !errors.Is(err, sns.ErrSignature) {
		t.Errorf("re-dated replay: %v, want ErrSignature", err)
	}
}

// Forged deliveries naming a fresh certificate path each cannot make the
// relay download once per request: past the rate, Verify refuses at once
// with the transient ErrCertLimited, and a genuine certificate is fetched
// once tokens are back (SNS's redelivery).
func TestCertFetchRateLimit(t *testing.T) {
	signer := snstest.New(t)
	var gets atomic.Int64
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		w.Write(signer.CertPEM())
	}))
	const rate, burst = 5.0, 3
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/"}, CertFetchRate: rate, CertFetchBurst: burst})
	start := time.Now()
	var limited, other int
	const n = 200
	for i := range n {
		m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x",
			Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: fmt.Sprintf("%s/forged-%d.pem", srv.URL, i)}
		signer.Sign(m, "2")
		// Signed by the real key, so each one would be accepted if fetched.
		switch err := v.Verify(context.Background(), m); {
		case errors.Is(err, sns.ErrCertLimited):
			if !errors.Is(err, sns.ErrCertFetch) {
				t.Fatalf("limited but not ErrCertFetch: %v", err)
			}
			limited++
		case err != nil:
			other++
			t.Errorf("request %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	allowed := int64(burst + rate*elapsed.Seconds() + 1)
	t.Logf("%d requests with distinct certificate paths in %v: %d downloads, %d limited", n, elapsed.Round(time.Millisecond), gets.Load(), limited)
	if g := gets.Load(); g > allowed || g < burst {
		t.Errorf("%d downloads, want %d..%d", g, burst, allowed)
	}
	if limited+int(gets.Load())+other != n {
		t.Errorf("limited %d + downloaded %d + other %d != %d", limited, gets.Load(), other, n)
	}
	// Cached certificates are not limited.
	for range 10 {
		m := parse(t, signer.Notification(topic, "cached", "", "x", "2"))
		m.SigningCertURL = srv.URL + "/forged-0.pem"
		signer.Sign(m, "2")
		if err := v.Verify(context.Background(), m); err != nil {
			t.Fatalf("cached certificate: %v", err)
		}
	}
	// SNS's retry after Retry-After gets its new certificate.
	time.Sleep(time.Duration(float64(time.Second)/rate) + 50*time.Millisecond)
	m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x",
		Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: srv.URL + "/genuine.pem"}
	signer.Sign(m, "1")
	if err := v.Verify(context.Background(), m); err != nil {
		t.Errorf("genuine certificate after the burst: %v", err)
	}
}

// At most MaxCertFetches distinct certificate URLs download at once; a
// caller for a URL already downloading joins it instead.
func TestCertFetchInFlightBound(t *testing.T) {
	signer := snstest.New(t)
	release := make(chan struct{})
	var gets atomic.Int64
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		select {
		case <-release:
			w.Write(signer.CertPEM())
		case <-r.Context().Done():
		}
	}))
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/"}, MaxCertFetches: 2, CertFetchRate: 1000, CertFetchBurst: 1000, FetchTimeout: 10 * time.Second})
	msg := func(path string) *sns.Message {
		m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x",
			Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: srv.URL + path}
		signer.Sign(m, "2")
		return m
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, p := range []string{"/a.pem", "/b.pem", "/a.pem"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = v.Verify(context.Background(), msg(p))
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for gets.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := v.Verify(context.Background(), msg("/c.pem")); !errors.Is(err, sns.ErrCertLimited) {
		t.Errorf("third distinct URL while two download: %v, want ErrCertLimited", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusal took %v, want at once", d)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("verify %d: %v", i, err)
		}
	}
	if g := gets.Load(); g != 2 {
		t.Errorf("%d downloads, want 2", g)
	}
	if err := v.Verify(context.Background(), msg("/c.pem")); err != nil {
		t.Errorf("after the downloads finished: %v", err)
	}
}

// A certificate URL answering 4xx is not a certificate: final (403), not a
// transient fetch failure; 5xx, 408 and 429 stay transient.
func TestCertStatusFinality(t *testing.T) {
	signer := snstest.New(t)
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/"), "%d", &code)
		w.WriteHeader(code)
	}))
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/"}, CertFetchRate: 1000, CertFetchBurst: 100})
	for _, tt := range []struct {
		code  int
		final bool
	}{
		{404, true}, {403, true}, {410, true}, {400, true},
		{408, false}, {429, false}, {500, false}, {503, false}, {302, false},
	} {
		m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x",
			Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: fmt.Sprintf("%s/%d.pem", srv.URL, tt.code)}
		signer.Sign(m, "2")
		err := v.Verify(context.Background(), m)
		if tt.final && (!errors.Is(err, sns.ErrSignature) || retryable(err)) {
			t.Errorf("cert answering %d: %v, want final ErrSignature", tt.code, err)
		}
		if !tt.final && (!errors.Is(err, sns.ErrCertFetch) || errors.Is(err, sns.ErrCertLimited)) {
			t.Errorf("cert answering %d: %v, want transient ErrCertFetch", tt.code, err)
		}
	}
}
