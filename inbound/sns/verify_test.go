package sns_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

const topic = "arn:aws:sns:us-east-1:123456789012:ses-inbound"

type observation struct{ op, outcome string }

type recorder struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recorder) observe(op, outcome string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{op, outcome})
}

func (r *recorder) all() []observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observation(nil), r.obs...)
}

func newVerifier(t testing.TB, opts sns.VerifierOptions) *sns.Verifier {
	t.Helper()
	v, err := sns.NewVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func parse(t testing.TB, body []byte) *sns.Message {
	t.Helper()
	m, err := sns.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func TestVerify(t *testing.T) {
	signer := snstest.New(t)
	prefix := strings.TrimSuffix(signer.CertURL(), snstest.CertPath)
	other := snstest.New(t) // a different key behind an allowed URL
	rec := &recorder{}
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{prefix}, Observe: rec.observe})

	tests := []struct {
		name   string
		body   func() []byte
		err    error
		perm   bool
		mutate func(m *sns.Message)
	}{
		{name: "v1 notification", body: func() []byte {
			return signer.Notification(topic, "id-1", "Amazon SES Email Receipt Notification", `{"a":1}`, "1")
		}},
		{name: "v2 notification", body: func() []byte {
			return signer.Notification(topic, "id-2", "subject", "body\nwith \"quotes\" and ünïcode", "2")
		}},
		{name: "v1 without subject", body: func() []byte { return signer.Notification(topic, "id-3", "", "x", "1") }},
		{name: "v2 subscription confirmation", body: func() []byte {
			return signer.Body(signer.Confirmation(sns.TypeSubscriptionConfirmation, topic, "http://127.0.0.1/confirm"), "2")
		}},
		{name: "v1 unsubscribe confirmation", body: func() []byte { return signer.UnsubscribeConfirmation(topic, "http://127.0.0.1/x") }},
		{name: "tampered message", body: func() []byte { return signer.Notification(topic, "id-4", "s", "original", "2") },
			mutate: func(m *sns.Message) { m.Message = "forged" }, err: sns.ErrSignature, perm: true},
		{name: "tampered topic", body: func() []byte { return signer.Notification(topic, "id-5", "s", "m", "1") },
			mutate: func(m *sns.Message) { m.TopicArn += "x" }, err: sns.ErrSignature, perm: true},
		{name: "subject added", body: func() []byte { return signer.Notification(topic, "id-6", "", "m", "1") },
			mutate: func(m *sns.Message) { m.Subject = "injected" }, err: sns.ErrSignature, perm: true},
		{name: "version swapped", body: func() []byte { return signer.Notification(topic, "id-7", "s", "m", "1") },
			mutate: func(m *sns.Message) { m.SignatureVersion = "2" }, err: sns.ErrSignature, perm: true},
		{name: "unknown version", body: func() []byte { return signer.Notification(topic, "id-8", "s", "m", "1") },
			mutate: func(m *sns.Message) { m.SignatureVersion = "3" }, err: sns.ErrSignature, perm: true},
		{name: "signature not base64", body: func() []byte { return signer.Notification(topic, "id-9", "s", "m", "1") },
			mutate: func(m *sns.Message) { m.Signature = "!!!" }, err: sns.ErrSignature, perm: true},
		{name: "signed by another key", body: func() []byte {
			m := &sns.Message{Type: sns.TypeNotification, MessageId: "id-10", TopicArn: topic, Message: "m", Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: signer.CertURL()}
			return other.Body(m, "2")
		}, err: sns.ErrSignature, perm: true},
		{name: "cert url outside prefix", body: func() []byte { return signer.Notification(topic, "id-11", "s", "m", "1") },
			mutate: func(m *sns.Message) { m.SigningCertURL = other.CertURL() }, err: sns.ErrCertURL, perm: true},
		{name: "cert missing behind allowed prefix", body: func() []byte { return signer.Notification(topic, "id-12", "s", "m", "1") },
			mutate: func(m *sns.Message) { m.SigningCertURL = prefix + "missing.pem" }, err: sns.ErrSignature, perm: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := parse(t, tt.body())
			if tt.mutate != nil {
				tt.mutate(m)
			}
			err := v.Verify(context.Background(), m)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("Verify error %v, want %v", err, tt.err)
			}
			if retryable(err) == tt.perm {
				t.Errorf("retryable(%v) = %v, want %v", err, retryable(err), !tt.perm)
			}
		})
	}
	if n := signer.Fetches(); n != 1 {
		t.Errorf("certificate fetched %d times, want 1 (cached)", n)
	}
	if n := other.Fetches(); n != 0 {
		t.Errorf("disallowed certificate URL fetched %d times", n)
	}
	want := []observation{{sns.OpGetCertificate, sns.OutcomeOK}, {sns.OpGetCertificate, sns.OutcomeError}}
	if got := rec.all(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("observations %v, want %v", got, want)
	}
}

func TestURLRules(t *testing.T) {
	aws := newVerifier(t, sns.VerifierOptions{})
	local := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{"http://127.0.0.1:4566/_aws/sns/", " "}})
	tests := []struct {
		v         *sns.Verifier
		url       string
		cert, sub bool
	}{
		{aws, "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", true, true},
		{aws, "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", true, true},
		{aws, "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem", true, true},
		{aws, "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:1:t&Token=x", false, true},
		{aws, "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", false, false},
		{aws, "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem", false, false},
		{aws, "https://sns.us-east-1.amazonaws.com.evil.example/x.pem", false, false},
		{aws, "https://evil.example/sns.us-east-1.amazonaws.com/x.pem", false, false},
		{aws, "https://sns.amazonaws.com/x.pem", false, false},
		{aws, "https://s3.us-east-1.amazonaws.com/x.pem", false, false},
		{aws, "https://x.sns.us-east-1.amazonaws.com/x.pem", false, false},
		{aws, "https://user@sns.us-east-1.amazonaws.com/x.pem", false, false},
		{aws, "https://sns.us-east-1.amazonaws.com/x.txt", false, true},
		{aws, "https://sns.us-east-1.amazonaws.com/x.pem?y", false, true},
		{aws, "https://sns.us-east-1.amazonaws.com/x.pem#frag", false, false},
		{aws, "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem", false, false},
		{aws, "https:sns.us-east-1.amazonaws.com/x.pem", false, false},
		{aws, "", false, false},
		{aws, "http://127.0.0.1:4566/_aws/sns/x.pem", false, false},
		{local, "http://127.0.0.1:4566/_aws/sns/SimpleNotificationService-6c6f63616c737461636b69736e696365.pem", true, true},
		{local, "http://127.0.0.1:4566/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:000000000000:t&Token=abc", false, true},
		{local, "http://127.0.0.1:4566/_aws/other/x.pem", false, true},
		{local, "http://127.0.0.1:4566/_aws/sns/../../admin", false, false},
		{local, "http://127.0.0.1:45667/_aws/sns/x.pem", false, false},
		{local, "http://127.0.0.1:4566@evil.example/_aws/sns/x.pem", false, false},
		{local, "https://127.0.0.1:4566/_aws/sns/x.pem", false, false},
		{local, "http://127.0.0.2:4566/_aws/sns/x.pem", false, false},
		{local, "https://sns.us-east-1.amazonaws.com/x.pem", false, false},
	}
	for _, tt := range tests {
		if got := tt.v.CertURLAllowed(tt.url); got != tt.cert {
			t.Errorf("CertURLAllowed(%q) = %v, want %v", tt.url, got, tt.cert)
		}
		if got := tt.v.URLAllowed(tt.url); got != tt.sub {
			t.Errorf("URLAllowed(%q) = %v, want %v", tt.url, got, tt.sub)
		}
	}
	for _, bad := range []string{"ftp://x/", "127.0.0.1:4566", "http:///nohost", "http://u:p@h/", "http://h/?q"} {
		if _, err := sns.NewVerifier(sns.VerifierOptions{CertURLPrefixes: []string{bad}}); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

func TestVerifyFetchTimeout(t *testing.T) {
	signer := snstest.New(t)
	release := make(chan struct{})
	hang := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	rec := &recorder{}
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{hang.URL + "/"}, FetchTimeout: 50 * time.Millisecond, Observe: rec.observe})
	m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x", Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: hang.URL + "/cert.pem"}
	signer.Sign(m, "2")
	err := v.Verify(context.Background(), m)
	if !errors.Is(err, sns.ErrCertFetch) || !retryable(err) {
		t.Fatalf("Verify against hanging cert server: %v, want transient ErrCertFetch", err)
	}
	if got := rec.all(); len(got) != 1 || got[0] != (observation{sns.OpGetCertificate, sns.OutcomeTimeout}) {
		t.Errorf("observations %v, want one GetCertificate timeout", got)
	}
}

func TestVerifyCallerCancel(t *testing.T) {
	signer := snstest.New(t)
	release := make(chan struct{})
	var fetches atomic.Int64
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release
		w.Write(signer.CertPEM())
	}))
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/"}, FetchTimeout: 10 * time.Second})
	m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x", Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: srv.URL + "/cert.pem"}
	signer.Sign(m, "1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Verify(ctx, m); !errors.Is(err, sns.ErrCertFetch) && !errors.Is(err, sns.ErrTimestamp) {
		t.Fatalf("canceled Verify: %v", err)
	}
	// The shared download goes on without the canceled caller and fills
	// the cache for the next one.
	close(release)
	if err := v.Verify(context.Background(), m); err != nil {
		t.Fatalf("Verify after release: %v", err)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("fetched %d times, want 1", n)
	}
}

func TestVerifySingleFlight(t *testing.T) {
	signer := snstest.New(t)
	const n = 16
	release := make(chan struct{})
	var fetches atomic.Int64
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		select {
		case <-release:
		case <-time.After(10 * time.Second): // the test fails below rather than hangs
		}
		w.Write(signer.CertPEM())
	}))
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/"}, FetchTimeout: 20 * time.Second})
	var joined atomic.Int64
	sns.SetJoinHook(v, func() {
		if joined.Add(1) == n-1 {
			close(release)
		}
	})
	m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x", Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: srv.URL + "/cert.pem"}
	signer.Sign(m, "2")
	errs := make(chan error, n)
	for range n {
		go func() { errs <- v.Verify(context.Background(), m) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("%d concurrent verifications fetched %d times, want 1", n, got)
	}
	if got := joined.Load(); got != n-1 {
		t.Errorf("%d joined the flight, want %d", got, n-1)
	}
}

func TestCacheBoundAndTTL(t *testing.T) {
	a, b := snstest.New(t), snstest.New(t)
	prefixes := []string{strings.TrimSuffix(a.CertURL(), snstest.CertPath), strings.TrimSuffix(b.CertURL(), snstest.CertPath)}
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: prefixes, CacheSize: 1, CacheTTL: time.Minute,
		Now: func() time.Time { return *now.Load() }})
	verify := func(s *snstest.Signer) {
		t.Helper()
		if err := v.Verify(context.Background(), parse(t, s.Notification(topic, "m", "", "x", "1"))); err != nil {
			t.Fatal(err)
		}
	}
	verify(a)
	verify(a)
	verify(b) // evicts a
	verify(a) // fetched again
	if fa, fb := a.Fetches(), b.Fetches(); fa != 2 || fb != 1 {
		t.Errorf("fetches a=%d b=%d, want 2 and 1", fa, fb)
	}
	if n := sns.CacheLen(v); n != 1 {
		t.Errorf("cache holds %d, want 1", n)
	}
	later := start.Add(2 * time.Minute)
	now.Store(&later)
	verify(a) // expired: fetched again
	if fa := a.Fetches(); fa != 3 {
		t.Errorf("after TTL fetches a=%d, want 3", fa)
	}
}

func TestCertValidity(t *testing.T) {
	signer := snstest.New(t)
	prefix := strings.TrimSuffix(signer.CertURL(), snstest.CertPath)
	for _, at := range []time.Time{time.Now().Add(-48 * time.Hour), time.Now().Add(2 * 365 * 24 * time.Hour)} {
		v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{prefix}, Now: func() time.Time { return at }})
		err := v.Verify(context.Background(), parse(t, signer.Notification(topic, "m", "", "x", "2")))
		if !errors.Is(err, sns.ErrSignature) {
			t.Errorf("certificate used at %v: err %v, want ErrSignature", at, err)
		}
	}
}

func TestBadCertificates(t *testing.T) {
	signer := snstest.New(t)
	bodies := map[string][]byte{
		"/garbage.pem": []byte("not a certificate"),
		"/key.pem":     []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"/bad-der.pem": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"/huge.pem":    []byte(strings.Repeat("A", sns.MaxCertBytes+1)),
	}
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect.pem" {
			http.Redirect(w, r, signer.CertURL(), http.StatusFound)
			return
		}
		if r.URL.Path == "/error.pem" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write(bodies[r.URL.Path])
	}))
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/", strings.TrimSuffix(signer.CertURL(), snstest.CertPath)}})
	tests := []struct {
		path string
		err  error
	}{
		{"/garbage.pem", sns.ErrSignature},
		{"/key.pem", sns.ErrSignature},
		{"/bad-der.pem", sns.ErrSignature},
		{"/huge.pem", sns.ErrSignature},
		{"/error.pem", sns.ErrCertFetch},
		{"/redirect.pem", sns.ErrCertFetch},
	}
	for _, tt := range tests {
		m := &sns.Message{Type: sns.TypeNotification, MessageId: "m", TopicArn: topic, Message: "x", Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: srv.URL + tt.path}
		signer.Sign(m, "1")
		if err := v.Verify(context.Background(), m); !errors.Is(err, tt.err) {
			t.Errorf("%s: err %v, want %v", tt.path, err, tt.err)
		}
	}
	if n := signer.Fetches(); n != 0 {
		t.Errorf("redirect followed: signer cert fetched %d times", n)
	}
}

func TestConfirm(t *testing.T) {
	signer := snstest.New(t)
	var hits atomic.Int64
	status := atomic.Int64{}
	status.Store(http.StatusOK)
	srv := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Query().Get("Action") != "ConfirmSubscription" {
			t.Errorf("confirm request %s", r.URL)
		}
		w.WriteHeader(int(status.Load()))
		w.Write([]byte("<ConfirmSubscriptionResponse/>"))
	}))
	elsewhere := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1000)
	}))
	rec := &recorder{}
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{srv.URL + "/sns/"}, Observe: rec.observe})
	subscribe := srv.URL + "/?Action=ConfirmSubscription&TopicArn=" + topic + "&Token=abc"

	conf := parse(t, signer.Body(signer.Confirmation(sns.TypeSubscriptionConfirmation, topic, subscribe), "1"))
	if err := v.Confirm(context.Background(), conf); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	status.Store(http.StatusInternalServerError)
	if err := v.Confirm(context.Background(), conf); !errors.Is(err, sns.ErrConfirm) || !retryable(err) {
		t.Errorf("Confirm on 500: %v, want transient ErrConfirm", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("confirm requests %d, want 2", n)
	}
	bad := parse(t, signer.Body(signer.Confirmation(sns.TypeSubscriptionConfirmation, topic, elsewhere.URL+"/?Action=ConfirmSubscription"), "1"))
	if err := v.Confirm(context.Background(), bad); !errors.Is(err, sns.ErrSubscribeURL) || retryable(err) {
		t.Errorf("Confirm elsewhere: %v, want permanent ErrSubscribeURL", err)
	}
	unsub := parse(t, signer.UnsubscribeConfirmation(topic, subscribe))
	if err := v.Confirm(context.Background(), unsub); !errors.Is(err, sns.ErrNotConfirmation) {
		t.Errorf("Confirm of UnsubscribeConfirmation: %v", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("requests after refused confirmations %d, want 2", n)
	}
	want := []observation{{sns.OpConfirmSubscription, sns.OutcomeOK}, {sns.OpConfirmSubscription, sns.OutcomeError}}
	if got := rec.all(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("observations %v, want %v", got, want)
	}
}

func FuzzVerify(f *testing.F) {
	signer := snstest.New(f)
	v := newVerifier(f, sns.VerifierOptions{
		CertURLPrefixes: []string{strings.TrimSuffix(signer.CertURL(), snstest.CertPath)},
		FetchTimeout:    time.Second,
	})
	f.Add(signer.Notification(topic, "m1", "subject", `{"notificationType":"Received"}`, "1"))
	f.Add(signer.Notification(topic, "m2", "", "x", "2"))
	f.Add(signer.SubscriptionConfirmation(topic, "http://127.0.0.1/?Action=ConfirmSubscription"))
	f.Add(signer.UnsubscribeConfirmation(topic, "http://127.0.0.1/"))
	for _, tt := range parseTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := sns.Parse(body)
		if err != nil {
			return
		}
		err = v.Verify(context.Background(), m)
		if err != nil && !errors.Is(err, sns.ErrSignature) && !errors.Is(err, sns.ErrCertURL) && !errors.Is(err, sns.ErrCertFetch) && !errors.Is(err, sns.ErrTimestamp) {
			t.Fatalf("Verify error outside the sentinels: %v", err)
		}
		v.URLAllowed(m.SubscribeURL)
	})
}
