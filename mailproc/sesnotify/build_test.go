package sesnotify

import (
	"testing"
	"time"
)

func TestReceivedRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.FixedZone("x", 3600))
	tests := []struct {
		name    string
		n       *Notification
		verdict string // spam verdict after parsing
	}{
		{"no verdicts", Received("abc", at, []string{"shop@relay.example.com"}, S3Action("arn:t", "b", "mail/abc")), ""},
		{"pass", Received("abc", at, []string{"shop@relay.example.com"}, S3Action("arn:t", "b", "mail/abc")).Pass(), StatusPass},
		{"nil recipients", Received("abc", at, nil, S3Action("arn:t", "b", "mail/abc")), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.n.JSON())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.Mail.MessageID != "abc" || got.Receipt.Action.ObjectKey != "mail/abc" || got.Receipt.Action.BucketName != "b" {
				t.Errorf("round trip lost fields: %+v", got)
			}
			if !got.Mail.Timestamp.Equal(at) || got.Mail.Timestamp.Location() != time.UTC {
				t.Errorf("timestamp %v, want %v in UTC", got.Mail.Timestamp, at)
			}
			if got.Receipt.SpamVerdict.Status != tc.verdict {
				t.Errorf("spam verdict %q, want %q", got.Receipt.SpamVerdict.Status, tc.verdict)
			}
			if got.Receipt.Recipients == nil {
				t.Error("recipients marshalled as null")
			}
		})
	}
}
