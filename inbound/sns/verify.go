package sns

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/telemetry"
)

var (
	// ErrCertURL: the SigningCertURL fails the URL rule; it is never fetched.
	ErrCertURL = errors.New("sns: signing certificate URL not allowed")
	// ErrSignature: the signature does not verify, its version is unknown, or
	// the certificate is unusable.
	ErrSignature = errors.New("sns: bad signature")
	// ErrCertFetch: downloading the certificate failed, timed out or answered
	// other than 200 (SNS's redelivery may succeed).
	ErrCertFetch = errors.New("sns: fetching signing certificate failed")
	// ErrTimestamp: the (signed) Timestamp is older than MaxAge or more than
	// MaxClockSkew in the future, or unparseable: a replayed or forged
	// delivery, refused for good.
	ErrTimestamp = errors.New("sns: timestamp outside the accepted window")
)

// Operation names passed to VerifierOptions.Observe.
const (
	OpGetCertificate      = "GetCertificate"
	OpConfirmSubscription = "ConfirmSubscription"
)

// Outcomes passed to VerifierOptions.Observe: the values of the
// mailrelay_external_call_duration_seconds outcome label, named in
// telemetry.
const (
	OutcomeOK      = telemetry.OutcomeOK
	OutcomeError   = telemetry.OutcomeError
	OutcomeTimeout = telemetry.OutcomeTimeout
)

// Defaults for VerifierOptions.
const (
	DefaultFetchTimeout = 3 * time.Second
	DefaultCacheSize    = 64
	DefaultCacheTTL     = 24 * time.Hour
	// MaxCertBytes caps a certificate download (SNS certificates are ~2 KB).
	MaxCertBytes = 64 << 10
	// DefaultMaxAge is how old a delivery's Timestamp may be. SNS retries
	// an HTTP delivery for at most an hour; the rest is slack for clocks
	// and queues.
	DefaultMaxAge = 2 * time.Hour
	// MaxClockSkew is how far in the future a Timestamp may be.
	MaxClockSkew = 5 * time.Minute
)

// VerifierOptions configure a Verifier. The zero value is the AWS rule with
// the defaults.
type VerifierOptions struct {
	// CertURLPrefixes: empty means the AWS rule (https, host
	// sns.<region>.amazonaws.com or .amazonaws.com.cn, path ending in .pem);
	// otherwise a certificate URL must start with one of these prefixes
	// (LocalStack: "http://127.0.0.1:4566/_aws/sns/").
	CertURLPrefixes []string
	// HTTPClient fetches certificates and SubscribeURLs. It is copied and
	// redirects are refused (a redirect could lead past the URL rule).
	// Default: a client with http.DefaultTransport.
	HTTPClient *http.Client
	// FetchTimeout bounds one certificate download or subscription
	// confirmation. Default DefaultFetchTimeout.
	FetchTimeout time.Duration
	// CacheSize bounds the number of parsed certificates kept (LRU).
	// Default DefaultCacheSize.
	CacheSize int
	// CacheTTL is how long a certificate is reused before it is fetched
	// again (never past its NotAfter). Default DefaultCacheTTL.
	CacheTTL time.Duration
	// Observe, if set, is called after each network call with the operation
	// (OpGetCertificate, OpConfirmSubscription), the outcome (OutcomeOK,
	// OutcomeError, OutcomeTimeout) and its duration.
	Observe func(operation, outcome string, d time.Duration)
	// Now returns the current time (tests). Default time.Now. It decides
	// certificate validity and the age of a delivery's Timestamp, so
	// fixtures with fixed timestamps pass a fixed clock.
	Now func() time.Time
	// MaxAge is how old a delivery's Timestamp may be (ErrTimestamp
	// above). Default DefaultMaxAge.
	MaxAge time.Duration
	// CertFetchRate and CertFetchBurst limit how many downloads of
	// certificates not in the cache start, per second and at once; and
	// MaxCertFetches bounds the distinct URLs downloading at the same time.
	// Past either, Verify fails with ErrCertLimited (and ErrCertFetch)
	// without a download. Defaults DefaultCertFetchRate,
	// DefaultCertFetchBurst, DefaultMaxCertFetches.
	CertFetchRate  float64
	CertFetchBurst int
	MaxCertFetches int
}

// Verifier authenticates SNS messages. It is safe for concurrent use.
type Verifier struct {
	rule         urlRule
	client       *http.Client
	fetchTimeout time.Duration
	ttl          time.Duration
	observe      func(operation, outcome string, d time.Duration)
	now          func() time.Time
	maxAge       time.Duration
	maxFetches   int

	mu       sync.Mutex
	cache    *lru
	inflight map[string]*flight
	fetches  *tokenBucket // new downloads; guarded by mu

	// joinHook is called when a Verify joins a download already in flight
	// (tests).
	joinHook func()
}

// flight is one certificate download shared by concurrent verifications.
type flight struct {
	done chan struct{} // closed when pub and err are set
	pub  *rsa.PublicKey
	err  error
}

// NewVerifier returns a Verifier, or an error for a malformed prefix.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	rule, err := newURLRule(opts.CertURLPrefixes)
	if err != nil {
		return nil, err
	}
	client := &http.Client{}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v := &Verifier{
		rule:         rule,
		client:       client,
		fetchTimeout: opts.FetchTimeout,
		ttl:          opts.CacheTTL,
		observe:      opts.Observe,
		now:          opts.Now,
		maxAge:       opts.MaxAge,
		maxFetches:   opts.MaxCertFetches,
		inflight:     map[string]*flight{},
	}
	if v.maxAge <= 0 {
		v.maxAge = DefaultMaxAge
	}
	if v.maxFetches <= 0 {
		v.maxFetches = DefaultMaxCertFetches
	}
	rate, burst := opts.CertFetchRate, opts.CertFetchBurst
	if rate <= 0 {
		rate = DefaultCertFetchRate
	}
	if burst <= 0 {
		burst = DefaultCertFetchBurst
	}
	v.fetches = newTokenBucket(rate, burst)
	if v.fetchTimeout <= 0 {
		v.fetchTimeout = DefaultFetchTimeout
	}
	if v.ttl <= 0 {
		v.ttl = DefaultCacheTTL
	}
	if v.now == nil {
		v.now = time.Now
	}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	v.cache = newLRU(size)
	return v, nil
}

// CertURLAllowed reports whether u may be fetched as a signing certificate.
func (v *Verifier) CertURLAllowed(u string) bool { return v.rule.certAllowed(u) }

// URLAllowed reports whether u may be fetched as a SubscribeURL: the
// certificate rule's scheme and host (the AWS SNS hosts, or the scheme and
// host of a configured prefix), any path.
func (v *Verifier) URLAllowed(u string) bool { return v.rule.originAllowed(u) }

// Verify authenticates m: the certificate URL must pass the rule, the
// signature version must be "1" (SHA1withRSA) or "2" (SHA256withRSA), and
// the base64 signature must verify over m.StringToSign() with the public key
// of the certificate at SigningCertURL (downloaded once, then cached), and
// the signed Timestamp must be at most MaxAge old and at most MaxClockSkew
// in the future. Errors wrap ErrCertURL, ErrSignature, ErrTimestamp or
// ErrCertFetch (with ErrCertLimited when the download limit refused a new
// download). A certificate URL answering 4xx (other than 408 and 429) is
// not a certificate: ErrSignature.
func (v *Verifier) Verify(ctx context.Context, m *Message) error {
	return v.verify(ctx, m, v.maxAge, time.Time{})
}

// VerifyAt is Verify with the Timestamp's age measured at received instead
// of now (zero: now): for a message that waited in a queue (the SQS
// intake), received is when SNS put it there (SQS's SentTimestamp, set by
// SQS, not by the sender). SNS stamps and enqueues a delivery at once, so a
// genuine one is seconds old then, however long it waited afterwards; an
// old delivery sent into the queue again (a replay) is refused.
func (v *Verifier) VerifyAt(ctx context.Context, m *Message, received time.Time) error {
	return v.verify(ctx, m, v.maxAge, received)
}

// VerifyMaxAge is Verify with the Timestamp allowed up to maxAge old
// instead of the Verifier's MaxAge. It is for deliveries an authenticated
// operator hands over from the subscription's dead-letter queue (SQS keeps
// them for days): the signature still proves SNS published them, the
// operator vouches for the replay.
func (v *Verifier) VerifyMaxAge(ctx context.Context, m *Message, maxAge time.Duration) error {
	if maxAge <= 0 {
		maxAge = v.maxAge
	}
	return v.verify(ctx, m, maxAge, time.Time{})
}

func (v *Verifier) verify(ctx context.Context, m *Message, maxAge time.Duration, received time.Time) error {
	if !v.rule.certAllowed(m.SigningCertURL) {
		return fmt.Errorf("%w: %.200q", ErrCertURL, m.SigningCertURL)
	}
	var hash crypto.Hash
	switch m.SignatureVersion {
	case "1":
		hash = crypto.SHA1
	case "2":
		hash = crypto.SHA256
	default:
		return badSignature(fmt.Errorf("unknown signature version %.16q", m.SignatureVersion))
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return badSignature(fmt.Errorf("signature not base64: %v", err))
	}
	s, err := m.StringToSign()
	if err != nil {
		return badSignature(err)
	}
	pub, err := v.publicKey(ctx, m.SigningCertURL)
	if err != nil {
		return err
	}
	err = verifyPKCS1(pub, hash, s, sig)
	if err != nil && v.dropStale(m.SigningCertURL) {
		// The key behind a URL can change (a LocalStack restart makes a new
		// one at the same URL): a signature that fails against a key cached
		// for a while gets one more try with a fresh download. At most one
		// download per URL per RefetchAfter, so forged deliveries cannot
		// turn into a download each.
		if pub, err = v.publicKey(ctx, m.SigningCertURL); err != nil {
			return err
		}
		err = verifyPKCS1(pub, hash, s, sig)
	}
	if err != nil {
		return badSignature(err)
	}
	// After the signature, which covers Timestamp: a replay of a genuine
	// delivery is refused here.
	return v.checkTimestamp(m.Timestamp, maxAge, received)
}

// checkTimestamp refuses a Timestamp outside [now-maxAge, now+MaxClockSkew],
// now being received unless that is zero.
func (v *Verifier) checkTimestamp(ts string, maxAge time.Duration, received time.Time) error {
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return fmt.Errorf("%w: unparseable %.40q", ErrTimestamp, ts)
	}
	now := received
	if now.IsZero() {
		now = v.now()
	}
	if age := now.Sub(at); age > maxAge {
		return fmt.Errorf("%w: %s is %s old, over %s", ErrTimestamp, at.UTC().Format(time.RFC3339), age.Round(time.Second), maxAge)
	}
	if ahead := at.Sub(now); ahead > MaxClockSkew {
		return fmt.Errorf("%w: %s is %s in the future", ErrTimestamp, at.UTC().Format(time.RFC3339), ahead.Round(time.Second))
	}
	return nil
}

// RefetchAfter is how old a cached certificate must be before a failed
// signature check downloads it again.
const RefetchAfter = time.Minute

func (v *Verifier) dropStale(certURL string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cache.dropStale(certURL, v.now(), RefetchAfter)
}

func verifyPKCS1(pub *rsa.PublicKey, hash crypto.Hash, s, sig []byte) error {
	var digest []byte
	if hash == crypto.SHA1 {
		h := sha1.Sum(s)
		digest = h[:]
	} else {
		h := sha256.Sum256(s)
		digest = h[:]
	}
	return rsa.VerifyPKCS1v15(pub, hash, digest, sig)
}

func badSignature(err error) error {
	return fmt.Errorf("%w: %v", ErrSignature, err)
}

// publicKey returns the RSA key of the certificate at certURL from the
// cache, or downloads it, sharing one download among concurrent callers.
func (v *Verifier) publicKey(ctx context.Context, certURL string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	if pub, ok := v.cache.get(certURL, v.now()); ok {
		v.mu.Unlock()
		return pub, nil
	}
	f, joined := v.inflight[certURL]
	if !joined {
		if err := v.admitLocked(); err != nil {
			v.mu.Unlock()
			return nil, err
		}
		f = &flight{done: make(chan struct{})}
		v.inflight[certURL] = f
		// The download must not die with the first caller's request: it
		// runs detached, bounded by FetchTimeout, and every caller waits on
		// its own context.
		go v.download(context.WithoutCancel(ctx), certURL, f)
	}
	hook := v.joinHook
	v.mu.Unlock()
	if joined && hook != nil {
		hook()
	}
	select {
	case <-f.done:
		return f.pub, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrCertFetch, ctx.Err())
	}
}

// admitLocked decides whether a new download may start (v.mu held).
func (v *Verifier) admitLocked() error {
	if len(v.inflight) >= v.maxFetches {
		return fmt.Errorf("%w: %w: %d certificate downloads running", ErrCertFetch, ErrCertLimited, len(v.inflight))
	}
	if !v.fetches.allow(time.Now()) {
		return fmt.Errorf("%w: %w: new certificate downloads over their rate", ErrCertFetch, ErrCertLimited)
	}
	return nil
}

func (v *Verifier) download(ctx context.Context, certURL string, f *flight) {
	var (
		pub      *rsa.PublicKey
		notAfter time.Time
		err      error
	)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic: %v", ErrCertFetch, r)
		}
		v.mu.Lock()
		if err == nil {
			exp := v.now().Add(v.ttl)
			if notAfter.Before(exp) {
				exp = notAfter
			}
			v.cache.put(certURL, pub, exp, v.now())
		}
		delete(v.inflight, certURL)
		v.mu.Unlock()
		f.pub, f.err = pub, err
		close(f.done)
	}()
	var body []byte
	body, err = v.get(ctx, OpGetCertificate, certURL, MaxCertBytes, func(code int) bool { return code == http.StatusOK })
	var se *statusError
	if errors.As(err, &se) && finalStatus(se.code) {
		// Not a certificate at all (404 and the like): refusing again on
		// every redelivery is right, retrying is not.
		err = badSignature(fmt.Errorf("signing certificate: %v", err))
		return
	}
	if errors.Is(err, errTooLarge) {
		err = badSignature(fmt.Errorf("signing certificate over %d bytes", MaxCertBytes))
		return
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrCertFetch, err)
		return
	}
	pub, notAfter, err = v.parseCert(body)
}

// parseCert parses the first PEM certificate in b, checks its validity
// period and returns its RSA public key.
func (v *Verifier) parseCert(b []byte) (*rsa.PublicKey, time.Time, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, time.Time{}, badSignature(errors.New("signing certificate: no PEM CERTIFICATE block"))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, time.Time{}, badSignature(fmt.Errorf("signing certificate: %v", err))
	}
	now := v.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, time.Time{}, badSignature(fmt.Errorf("signing certificate not valid at %s (valid %s to %s)",
			now.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, time.Time{}, badSignature(fmt.Errorf("signing certificate key is %T, want RSA", cert.PublicKey))
	}
	return pub, cert.NotAfter, nil
}

// errTooLarge is returned by get, with the first max bytes, for a body
// over max.
var errTooLarge = errors.New("response body too large")

// get performs a bounded GET of u, observed as op, and returns at most max
// bytes of the body. A status for which ok returns false is an error.
func (v *Verifier) get(ctx context.Context, op, u string, max int64, ok func(int) bool) (body []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, v.fetchTimeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if v.observe == nil {
			return
		}
		outcome := OutcomeOK
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			outcome = OutcomeTimeout
		case err != nil && !errors.Is(err, errTooLarge):
			outcome = OutcomeError
		}
		v.observe(op, outcome, time.Since(start))
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if !ok(resp.StatusCode) {
		return nil, &statusError{url: u, code: resp.StatusCode}
	}
	if int64(len(body)) > max {
		return body[:max], errTooLarge
	}
	return body, nil
}

// statusError is get's error for a status ok refused.
type statusError struct {
	url  string
	code int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %.200s: status %d", e.url, e.code) }

// finalStatus reports whether a certificate URL answering code will never
// serve a certificate: a 4xx other than 408 (timeout) and 429 (throttled).
func finalStatus(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}
