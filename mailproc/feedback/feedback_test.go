package feedback

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func addresses(rs []Recipient) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.EmailAddress)
	}
	return out
}

// The samples are the shapes the SES developer guide documents.
func TestParseSamples(t *testing.T) {
	for _, tc := range []struct {
		file       string
		typ        string
		permanent  bool
		recipients []string
		from       string
	}{
		{"bounce_permanent.json", TypeBounce, true, []string{"jane@example.com", "richard@example.com"}, "john@example.com"},
		{"bounce_transient.json", TypeBounce, false, []string{"recipient@example.com"}, "Sender Name <sender@example.com>"},
		{"complaint_no_feedback_type.json", TypeComplaint, false, []string{"richard@example.com"}, "john@example.com"},
		{"complaint_abuse_event.json", TypeComplaint, false, []string{"recipient@example.com"}, "Sender Name <sender@example.com>"},
		{"delivery.json", TypeDelivery, false, []string{"jane@example.com"}, "john@example.com"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b := sample(t, tc.file)
			if !IsFeedback(b) {
				t.Error("IsFeedback = false")
			}
			e, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type != tc.typ || e.Mail.Source != tc.from {
				t.Errorf("type %q source %q", e.Type, e.Mail.Source)
			}
			var got []string
			switch e.Type {
			case TypeBounce:
				got = addresses(e.Bounce.BouncedRecipients)
				if e.Bounce.Permanent() != tc.permanent {
					t.Errorf("Permanent = %v", e.Bounce.Permanent())
				}
			case TypeComplaint:
				got = addresses(e.Complaint.ComplainedRecipients)
			case TypeDelivery:
				got = e.Delivery.Recipients
			}
			if !slices.Equal(got, tc.recipients) {
				t.Errorf("recipients %q, want %q", got, tc.recipients)
			}
		})
	}
	e, _ := Parse(sample(t, "complaint_no_feedback_type.json"))
	if e.Complaint.ComplaintFeedbackType != "" {
		t.Errorf("feedback type %q, want none", e.Complaint.ComplaintFeedbackType)
	}
	e, _ = Parse(sample(t, "complaint_abuse_event.json"))
	if e.Complaint.ComplaintFeedbackType != "abuse" || e.Mail.Tags["alias"][0] != "shop@relay.example.com" {
		t.Errorf("event publishing complaint: %+v, tags %v", e.Complaint, e.Mail.Tags)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, json string }{
		{"not json", `{`},
		{"no type", `{"mail":{"messageId":"m"}}`},
		{"received is not feedback", `{"notificationType":"Received","mail":{"messageId":"m"}}`},
		{"no message id", `{"notificationType":"Delivery","mail":{},"delivery":{}}`},
		{"bounce without details", `{"notificationType":"Bounce","mail":{"messageId":"m"}}`},
		{"bounce type unknown", `{"notificationType":"Bounce","mail":{"messageId":"m"},"bounce":{"bounceType":"Hard","bouncedRecipients":[{"emailAddress":"a@b"}]}}`},
		{"bounce without recipients", `{"notificationType":"Bounce","mail":{"messageId":"m"},"bounce":{"bounceType":"Permanent","bouncedRecipients":[]}}`},
		{"bounce recipient not an address", `{"notificationType":"Bounce","mail":{"messageId":"m"},"bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"nobody"}]}}`},
		{"complaint without recipients", `{"eventType":"Complaint","mail":{"messageId":"m"},"complaint":{}}`},
		{"delivery without details", `{"eventType":"Delivery","mail":{"messageId":"m"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			if !errors.Is(err, ErrMalformed) || !failure.IsPermanent(err) || failure.ReasonOf(err) != failure.ReasonMalformedNotification {
				t.Errorf("Parse = %v, want a permanent malformed_notification", err)
			}
		})
	}
	if IsFeedback([]byte(`{"notificationType":"Received"}`)) || IsFeedback([]byte(`nope`)) {
		t.Error("IsFeedback true for a non-feedback")
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"bounce_permanent.json", "bounce_transient.json", "complaint_no_feedback_type.json", "complaint_abuse_event.json", "delivery.json"} {
		f.Add(sample(f, name))
	}
	f.Add([]byte(`{"eventType":"Bounce"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if e.Mail.MessageID == "" || !IsFeedback(b) {
			t.Fatalf("accepted %+v", e)
		}
		switch e.Type {
		case TypeBounce:
			if len(e.Bounce.BouncedRecipients) == 0 {
				t.Fatal("bounce without recipients accepted")
			}
		case TypeComplaint:
			if len(e.Complaint.ComplainedRecipients) == 0 {
				t.Fatal("complaint without recipients accepted")
			}
		case TypeDelivery:
		default:
			t.Fatalf("type %q accepted", e.Type)
		}
	})
}
