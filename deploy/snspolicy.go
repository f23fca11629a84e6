package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SNSMaxRetryWindow is SNS's hard limit on the total retry time of an
// HTTP/S delivery policy.
const SNSMaxRetryWindow = time.Hour

// DeliveryPolicy is an SNS subscription's HTTP/S delivery policy (the
// subscription attribute DeliveryPolicy).
type DeliveryPolicy struct {
	HealthyRetryPolicy *HealthyRetryPolicy `json:"healthyRetryPolicy"`
	ThrottlePolicy     *struct {
		MaxReceivesPerSecond int `json:"maxReceivesPerSecond"`
	} `json:"throttlePolicy,omitempty"`
	RequestPolicy *struct {
		HeaderContentType string `json:"headerContentType"`
	} `json:"requestPolicy,omitempty"`
}

// HealthyRetryPolicy are the four phases of SNS's retries: immediate,
// pre-backoff (minDelayTarget apart), backoff (from min to max delay), and
// post-backoff (maxDelayTarget apart).
type HealthyRetryPolicy struct {
	MinDelayTarget     int    `json:"minDelayTarget"`
	MaxDelayTarget     int    `json:"maxDelayTarget"`
	NumRetries         int    `json:"numRetries"`
	NumNoDelayRetries  int    `json:"numNoDelayRetries"`
	NumMinDelayRetries int    `json:"numMinDelayRetries"`
	NumMaxDelayRetries int    `json:"numMaxDelayRetries"`
	BackoffFunction    string `json:"backoffFunction"`
}

// ParseDeliveryPolicy decodes a delivery policy, refusing unknown fields,
// and checks SNS's constraints on the retry policy.
func ParseDeliveryPolicy(data []byte) (*DeliveryPolicy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p DeliveryPolicy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("delivery policy: %w", err)
	}
	if dec.More() {
		return nil, errors.New("delivery policy: data after the object")
	}
	if p.HealthyRetryPolicy == nil {
		return nil, errors.New("delivery policy: no healthyRetryPolicy (SNS would retry 3 times in a minute)")
	}
	if err := p.HealthyRetryPolicy.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the constraints SNS documents for HTTP/S retry policies.
func (r *HealthyRetryPolicy) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if r.MinDelayTarget < 1 {
		bad("minDelayTarget %d: want at least 1", r.MinDelayTarget)
	}
	if r.MaxDelayTarget < r.MinDelayTarget || r.MaxDelayTarget > 3600 {
		bad("maxDelayTarget %d: want minDelayTarget..3600", r.MaxDelayTarget)
	}
	if r.NumRetries < 0 || r.NumRetries > 100 {
		bad("numRetries %d: want 0..100", r.NumRetries)
	}
	if r.NumNoDelayRetries < 0 || r.NumMinDelayRetries < 0 || r.NumMaxDelayRetries < 0 {
		bad("phase retry counts must not be negative")
	}
	if r.NumNoDelayRetries+r.NumMinDelayRetries+r.NumMaxDelayRetries > r.NumRetries {
		bad("numRetries %d is less than the immediate, pre- and post-backoff retries (%d)",
			r.NumRetries, r.NumNoDelayRetries+r.NumMinDelayRetries+r.NumMaxDelayRetries)
	}
	switch r.BackoffFunction {
	case "arithmetic", "exponential", "geometric", "linear":
	default:
		bad("backoffFunction %q: want arithmetic, exponential, geometric or linear", r.BackoffFunction)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("healthyRetryPolicy: %w", err)
	}
	return nil
}

// RetryWindow bounds the total time SNS keeps retrying a delivery: the
// delays of the backoff phase lie between minDelayTarget and
// maxDelayTarget, the shape being SNS's choice, so a policy with a backoff
// phase has lo < hi, and one without has lo == hi. SNS's jitter is ignored.
func (r *HealthyRetryPolicy) RetryWindow() (lo, hi time.Duration) {
	backoff := r.NumRetries - r.NumNoDelayRetries - r.NumMinDelayRetries - r.NumMaxDelayRetries
	fixed := r.NumMinDelayRetries*r.MinDelayTarget + r.NumMaxDelayRetries*r.MaxDelayTarget
	lo = time.Duration(fixed+backoff*r.MinDelayTarget) * time.Second
	hi = time.Duration(fixed+backoff*r.MaxDelayTarget) * time.Second
	return lo, hi
}
