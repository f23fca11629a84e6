// Package feedback handles the feedback SES publishes about mail the relay
// sent: Bounce, Complaint and Delivery notifications (notificationType, as
// identity notifications send them, or eventType, as configuration-set
// event publishing does). Parse decodes them; Handler keeps the state they
// lead to (paused destinations, complaints, disabled aliases, daily counts)
// in a Store and answers the pool's questions about it.
//
// Field names follow "Amazon SES notification contents" in the SES
// developer guide.
package feedback

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// Types of feedback.
const (
	TypeBounce    = "Bounce"
	TypeComplaint = "Complaint"
	TypeDelivery  = "Delivery"
)

// Bounce types.
const (
	BouncePermanent    = "Permanent"
	BounceTransient    = "Transient"
	BounceUndetermined = "Undetermined"
)

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("feedback: malformed notification")

// Event is one SES feedback notification.
type Event struct {
	Type      string     // TypeBounce, TypeComplaint or TypeDelivery
	Mail      Mail       `json:"mail"`
	Bounce    *Bounce    `json:"bounce,omitempty"`
	Complaint *Complaint `json:"complaint,omitempty"`
	Delivery  *Delivery  `json:"delivery,omitempty"`
}

// Mail is the sent mail the feedback is about.
type Mail struct {
	Timestamp     time.Time `json:"timestamp"`
	MessageID     string    `json:"messageId"`
	Source        string    `json:"source"` // envelope sender: the alias the relay sent as
	Destination   []string  `json:"destination"`
	CommonHeaders struct {
		From    []string `json:"from,omitempty"`
		To      []string `json:"to,omitempty"`
		Subject string   `json:"subject,omitempty"`
	} `json:"commonHeaders"`
	Tags map[string][]string `json:"tags,omitempty"` // event publishing only
}

// Recipient is a bounced or complained recipient.
type Recipient struct {
	EmailAddress   string `json:"emailAddress"`
	Action         string `json:"action,omitempty"`
	Status         string `json:"status,omitempty"`
	DiagnosticCode string `json:"diagnosticCode,omitempty"`
}

// Bounce is a bounce's details.
type Bounce struct {
	BounceType        string      `json:"bounceType"`
	BounceSubType     string      `json:"bounceSubType"`
	BouncedRecipients []Recipient `json:"bouncedRecipients"`
	Timestamp         time.Time   `json:"timestamp"`
	FeedbackID        string      `json:"feedbackId"`
	ReportingMTA      string      `json:"reportingMTA,omitempty"`
}

// Permanent reports whether the bounce is a hard one; Transient and
// Undetermined are soft.
func (b *Bounce) Permanent() bool { return b.BounceType == BouncePermanent }

// Complaint is a complaint's details. ComplaintFeedbackType is absent
// when the feedback report had none (it is optional).
type Complaint struct {
	ComplainedRecipients  []Recipient `json:"complainedRecipients"`
	Timestamp             time.Time   `json:"timestamp"`
	FeedbackID            string      `json:"feedbackId"`
	ComplaintSubType      *string     `json:"complaintSubType,omitempty"`
	ComplaintFeedbackType string      `json:"complaintFeedbackType,omitempty"`
	UserAgent             string      `json:"userAgent,omitempty"`
}

// Delivery is a delivery's details.
type Delivery struct {
	Timestamp            time.Time   `json:"timestamp"`
	ProcessingTimeMillis json.Number `json:"processingTimeMillis,omitempty"`
	Recipients           []string    `json:"recipients"`
	SMTPResponse         string      `json:"smtpResponse,omitempty"`
}

// IsFeedback reports, cheaply and without validating, whether b is a
// feedback notification (of a type Parse takes).
func IsFeedback(b []byte) bool {
	var probe struct {
		NotificationType string `json:"notificationType"`
		EventType        string `json:"eventType"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	switch typeOf(probe.NotificationType, probe.EventType) {
	case TypeBounce, TypeComplaint, TypeDelivery:
		return true
	}
	return false
}

func typeOf(notificationType, eventType string) string {
	if notificationType != "" {
		return notificationType
	}
	return eventType
}

// Parse decodes a feedback notification (the SNS Message) and checks it
// has what the relay acts on: a mail.messageId, and the details of its
// type with at least one recipient address. Errors are
// failure.Permanent(failure.ReasonMalformedNotification) wrapping
// ErrMalformed.
func Parse(b []byte) (*Event, error) {
	var raw struct {
		NotificationType string `json:"notificationType"`
		EventType        string `json:"eventType"`
		Event
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, malformed("%v", err)
	}
	e := raw.Event
	e.Type = typeOf(raw.NotificationType, raw.EventType)
	if e.Mail.MessageID == "" {
		return nil, malformed("no mail.messageId")
	}
	switch e.Type {
	case TypeBounce:
		if e.Bounce == nil {
			return nil, malformed("Bounce without bounce")
		}
		switch e.Bounce.BounceType {
		case BouncePermanent, BounceTransient, BounceUndetermined:
		default:
			return nil, malformed("bounceType %.32q", e.Bounce.BounceType)
		}
		if err := checkRecipients("bouncedRecipients", e.Bounce.BouncedRecipients); err != nil {
			return nil, err
		}
	case TypeComplaint:
		if e.Complaint == nil {
			return nil, malformed("Complaint without complaint")
		}
		if err := checkRecipients("complainedRecipients", e.Complaint.ComplainedRecipients); err != nil {
			return nil, err
		}
	case TypeDelivery:
		if e.Delivery == nil {
			return nil, malformed("Delivery without delivery")
		}
	case "":
		return nil, malformed("no notificationType or eventType")
	default:
		return nil, malformed("type %.32q is not feedback", e.Type)
	}
	return &e, nil
}

func checkRecipients(field string, rs []Recipient) error {
	if len(rs) == 0 {
		return malformed("no %s", field)
	}
	for _, r := range rs {
		if !strings.Contains(r.EmailAddress, "@") {
			return malformed("%s: %.64q is not an address", field, r.EmailAddress)
		}
	}
	return nil
}

func malformed(format string, args ...any) error {
	return failure.Permanent(failure.ReasonMalformedNotification, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...)))
}
