package sns

import (
	"errors"
	"time"
)

// ErrCertLimited: a new certificate download was not started because too
// many began recently or are still running (forged deliveries naming fresh
// certificate URLs must not turn into a download each). It always comes
// wrapped together with ErrCertFetch: transient, a genuine new certificate
// is fetched on SNS's redelivery.
var ErrCertLimited = errors.New("sns: certificate download limit reached")

// Defaults of the certificate download limit (VerifierOptions).
const (
	// DefaultCertFetchRate is how many new certificate downloads may start
	// per second, on average. SNS uses one certificate per region for
	// months; a handful a second is far beyond any genuine need.
	DefaultCertFetchRate = 2.0
	// DefaultCertFetchBurst is how many may start at once after a quiet
	// period.
	DefaultCertFetchBurst = 4
	// DefaultMaxCertFetches bounds the distinct certificate URLs being
	// downloaded at the same time.
	DefaultMaxCertFetches = 4
)

// tokenBucket is a minimal token bucket (golang.org/x/time/rate is not a
// dependency, and this needs only Allow). Not safe for concurrent use:
// Verifier.mu guards it. It runs on the monotonic wall clock, not on
// VerifierOptions.Now, so tests with a frozen clock still get tokens.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// allow takes a token if one is available at now.
func (b *tokenBucket) allow(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
