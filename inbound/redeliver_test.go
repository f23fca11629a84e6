package inbound_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// TestRedeliver: a message handed over from the dead-letter queue through
// the admin API gets the checks of POST /sns (topic, certificate URL,
// signature, de-duplication, durable write) but may be days old, where
// /sns refuses it as a replay; and only a Notification is taken.
func TestRedeliver(t *testing.T) {
	signer := snstest.New(t)
	e := newEnv(t, signer, envOptions{maxBody: 64 << 10})
	aged := func(id string, age time.Duration) []byte {
		m := &sns.Message{Type: sns.TypeNotification, MessageId: id, TopicArn: topic, Subject: subject, Message: sesS3,
			Timestamp: snstest.Timestamp(time.Now().Add(-age))}
		return signer.Body(m, "2")
	}
	threeDays := aged("dlq-1", 72*time.Hour)
	if code, _ := e.post(t, bytes.NewReader(threeDays)); code != http.StatusForbidden {
		t.Fatalf("/sns took a 3-day-old delivery: %d", code)
	}
	tests := []struct {
		name   string
		body   []byte
		code   int
		reason string
	}{
		{"three days old", threeDays, 200, "stored"},
		{"again: duplicate", threeDays, 200, "duplicate"},
		{"fresh", signer.Notification(topic, "dlq-2", subject, sesS3, "1"), 200, "stored"},
		{"older than a dead-letter queue keeps", aged("dlq-3", inbound.RedeliveryMaxAge+time.Hour), 403, "stale_timestamp"},
		{"forged", tamper(t, aged("dlq-4", time.Hour), func(m *sns.Message) { m.Message = strings.Replace(m.Message, "inbound", "evil", 1) }), 403, "bad_signature"},
		{"topic not allowed", signer.Notification(otherTopic, "dlq-5", subject, sesS3, "2"), 403, "topic_not_allowed"},
		{"subscription confirmation", signer.SubscriptionConfirmation(topic, e.confirmURL), 400, "not_a_notification"},
		{"not SNS", []byte(`{"bucket":"b"}`), 400, "malformed"},
		{"over the limit", signer.Notification(topic, "dlq-6", "", strings.Repeat("x", 65<<10), "2"), 413, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, err := e.handler.Redeliver(context.Background(), tt.body)
			if code != tt.code || reason != tt.reason {
				t.Fatalf("%d %s (%v), want %d %s", code, reason, err, tt.code, tt.reason)
			}
			if (code != 200) != (err != nil) {
				t.Errorf("err %v with %d", err, code)
			}
		})
	}
	got := e.queue.stored()
	if len(got) != 2 || got["dlq-1"].Payload == nil || got["dlq-2"].Payload == nil {
		t.Errorf("stored %v", got)
	}
	if e.confirmHits.Load() != 0 {
		t.Error("a redelivered confirmation was confirmed")
	}
}
