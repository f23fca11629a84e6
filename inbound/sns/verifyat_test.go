package sns_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// VerifyAt measures the Timestamp's age at the given time (when SQS
// received the message), not now.
func TestVerifyAt(t *testing.T) {
	s := snstest.New(t)
	prefix := s.CertURL()[:strings.LastIndex(s.CertURL(), "/")+1]
	v := newVerifier(t, sns.VerifierOptions{CertURLPrefixes: []string{prefix}})
	now := time.Now()
	tests := []struct {
		name      string
		stamped   time.Time
		received  time.Time
		wantStale bool
	}{
		{"queued a day, stamped at enqueue", now.Add(-24 * time.Hour), now.Add(-24*time.Hour + time.Second), false},
		{"replayed into the queue now", now.Add(-24 * time.Hour), now, true},
		{"zero received means now", now.Add(-24 * time.Hour), time.Time{}, true},
		{"fresh", now, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &sns.Message{Type: sns.TypeNotification, MessageId: snstest.NewMessageID(), TopicArn: "arn:aws:sns:us-east-1:1:t",
				Message: "{}", Timestamp: snstest.Timestamp(tt.stamped)}
			var parsed sns.Message
			if err := json.Unmarshal(s.Body(m, "2"), &parsed); err != nil {
				t.Fatal(err)
			}
			err := v.VerifyAt(context.Background(), &parsed, tt.received)
			if stale := errors.Is(err, sns.ErrTimestamp); stale != tt.wantStale || (err != nil && !stale) {
				t.Fatalf("err = %v, want stale %v", err, tt.wantStale)
			}
		})
	}
}
