package fakes

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"
)

// Quota is the fake SES account's sending quota. Sends beyond it are
// answered Throttling, as SES does: "Maximum sending rate exceeded." over
// MaxSendRate, "Daily message quota exceeded." over Max24HourSend. Like
// SES, every recipient of a send counts.
type Quota struct {
	// MaxSendRate is recipients per second (0: no limit; GetSendQuota
	// then answers DefaultMaxSendRate).
	MaxSendRate float64
	// Burst is how many recipients may go at once (default: one second's
	// worth, at least 1).
	Burst float64
	// Max24HourSend is the daily limit (0 or -1: none).
	Max24HourSend float64
}

// DefaultMaxSendRate is the MaxSendRate the fake reports when no quota
// limits it.
const DefaultMaxSendRate = 1000

// Errors of the quota, as SES words them.
var (
	ErrMaxSendRate = &SESError{Status: http.StatusBadRequest, Code: "Throttling", Message: "Maximum sending rate exceeded."}
	ErrDailyQuota  = &SESError{Status: http.StatusBadRequest, Code: "Throttling", Message: "Daily message quota exceeded."}
)

// quotaState is the fake's bucket; guarded by SES.mu.
type quotaState struct {
	q         Quota
	tokens    float64
	last      time.Time
	sent      float64 // recipients accepted (never forgotten: tests are shorter than a day)
	throttled int
}

// SetQuota sets the quota (the bucket starts full).
func (s *SES) SetQuota(q Quota) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q.Burst <= 0 {
		q.Burst = max(1, q.MaxSendRate)
	}
	s.quota.q, s.quota.tokens, s.quota.last = q, q.Burst, time.Time{}
}

// Throttled is the number of sends answered Throttling by the quota.
func (s *SES) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quota.throttled
}

// take charges n recipients to the quota at now; s.mu is held.
func (qs *quotaState) take(now time.Time, n int) error {
	q := qs.q
	if q.Max24HourSend > 0 && qs.sent+float64(n) > q.Max24HourSend {
		qs.throttled++
		return ErrDailyQuota
	}
	if q.MaxSendRate > 0 {
		if !qs.last.IsZero() {
			qs.tokens = math.Min(q.Burst, qs.tokens+now.Sub(qs.last).Seconds()*q.MaxSendRate)
		}
		qs.last = now
		if qs.tokens < float64(n) {
			qs.throttled++
			return ErrMaxSendRate
		}
		qs.tokens -= float64(n)
	}
	qs.sent += float64(n)
	return nil
}

// report is what GetSendQuota and GetAccount answer; s.mu is held.
func (qs *quotaState) report() (max24, rate, sent float64) {
	max24, rate = qs.q.Max24HourSend, qs.q.MaxSendRate
	if max24 <= 0 {
		max24 = -1
	}
	if rate <= 0 {
		rate = DefaultMaxSendRate
	}
	return max24, rate, qs.sent
}

// serveQuota answers SES v1 GetSendQuota or, with v2, SESv2 GetAccount.
func (s *SES) serveQuota(w http.ResponseWriter, v2 bool) {
	s.mu.Lock()
	max24, rate, sent := s.quota.report()
	s.mu.Unlock()
	if v2 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-RequestId", requestID())
		json.NewEncoder(w).Encode(map[string]any{
			"SendQuota":               map[string]float64{"Max24HourSend": max24, "MaxSendRate": rate, "SentLast24Hours": sent},
			"SendingEnabled":          true,
			"ProductionAccessEnabled": true,
		})
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<GetSendQuotaResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">
  <GetSendQuotaResult>
    <SentLast24Hours>%g</SentLast24Hours>
    <Max24HourSend>%g</Max24HourSend>
    <MaxSendRate>%g</MaxSendRate>
  </GetSendQuotaResult>
  <ResponseMetadata>
    <RequestId>%s</RequestId>
  </ResponseMetadata>
</GetSendQuotaResponse>
`, sent, max24, rate, requestID())
}
