package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassify(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name      string
		err       error
		permanent bool
		reason    Reason
	}{
		{"plain is transient", base, false, "error"},
		{"permanent", Permanent("malformed_mail", base), true, "malformed_mail"},
		{"wrapped permanent", fmt.Errorf("ctx: %w", Permanent("s3_not_found", base)), true, "s3_not_found"},
		{"transient", Transient("s3_timeout", base), false, "s3_timeout"},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), false, "timeout"},
		{"canceled", context.Canceled, false, "canceled"},
		{"formatted", Permanentf("bad", "x=%d", 1), true, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPermanent(tt.err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
			if got := ReasonOf(tt.err); got != tt.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tt.reason)
			}
		})
	}
	if IsPermanent(nil) {
		t.Error("nil must not be permanent")
	}
	if !errors.Is(Permanent("x", base), base) {
		t.Error("Unwrap lost the cause")
	}
}

// The values are metric labels and stored in dead letters: their spelling
// is a contract.
func TestReasonValues(t *testing.T) {
	for r, want := range map[Reason]string{
		ReasonBreakerOpen:           "breaker_open",
		ReasonMessageTooLarge:       "message_too_large",
		ReasonMalformedNotification: "malformed_notification",
		ReasonMalformedMail:         "malformed_mail",
		ReasonRetriesExhausted:      "retries_exhausted",
		ReasonS3NotFound:            "s3_not_found",
		ReasonSESThrottled:          "ses_throttled",
		ReasonS35xx:                 "s3_5xx",
		ReasonUnverified:            "unverified",
		ReasonInvalidRecipient:      "invalid_recipient",
		ReasonEmptySender:           "empty_sender",
		ReasonAutoSubmitted:         "auto_submitted",
		ReasonDeliveryReport:        "delivery_report",
		ReasonLoop:                  "loop",
		ReasonDMARCQuarantine:       "dmarc_quarantine",
		ReasonSPF:                   "spf",
		ReasonDKIM:                  "dkim",
		ReasonReply:                 "reply",
		ReasonReplyNotAllowed:       "reply_not_allowed",
		ReasonReplyInvalid:          "reply_invalid",
		ReasonReplyExpired:          "reply_expired",
	} {
		if string(r) != want {
			t.Errorf("%q, want %q", r, want)
		}
	}
}
