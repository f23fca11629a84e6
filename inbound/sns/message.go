// Package sns parses and authenticates Amazon SNS HTTP(S) deliveries: the
// JSON envelope, the canonical string to sign, signature versions 1
// (SHA1withRSA) and 2 (SHA256withRSA), the rule for which signing certificate
// and subscription URLs may be fetched at all, a bounded certificate cache,
// and subscription confirmation.
//
// Every error it returns wraps (with %w) one of its Err* sentinels, and that
// is its only error scheme: malformed input (ErrMalformed, ErrUnknownType),
// bad signatures (ErrSignature), timestamps outside the accepted window
// (ErrTimestamp: replays) and disallowed URLs (ErrCertURL, ErrSubscribeURL)
// fail whenever they are tried again; a failed or rate-limited certificate
// download (ErrCertFetch, with ErrCertLimited) or subscription confirmation
// (ErrConfirm) may succeed on SNS's redelivery. What each means for an answer is decided by
// the caller, in one place (inbound's status table).
package sns

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Message types of SNS HTTP(S) deliveries.
const (
	TypeNotification             = "Notification"
	TypeSubscriptionConfirmation = "SubscriptionConfirmation"
	TypeUnsubscribeConfirmation  = "UnsubscribeConfirmation"
)

var (
	// ErrMalformed: the body is not JSON or lacks a required field.
	ErrMalformed = errors.New("sns: malformed message")
	// ErrUnknownType: the Type is none of the three SNS delivery types.
	ErrUnknownType = errors.New("sns: unknown message type")
)

// Message is an SNS HTTP(S) delivery as JSON-encoded in the POST body.
//
// SNS names the certificate field "SigningCertURL" in HTTP deliveries and
// "SigningCertUrl" in Lambda events (likewise UnsubscribeURL/UnsubscribeUrl);
// both spellings decode into the same field because encoding/json matches
// object keys case-insensitively.
type Message struct {
	Type             string `json:"Type"`
	MessageId        string `json:"MessageId"`
	Token            string `json:"Token,omitempty"`
	TopicArn         string `json:"TopicArn"`
	Subject          string `json:"Subject,omitempty"`
	Message          string `json:"Message"`
	Timestamp        string `json:"Timestamp"`
	SignatureVersion string `json:"SignatureVersion"`
	Signature        string `json:"Signature"`
	SigningCertURL   string `json:"SigningCertURL"`
	SubscribeURL     string `json:"SubscribeURL,omitempty"`
	UnsubscribeURL   string `json:"UnsubscribeURL,omitempty"`

	// subjectPresent records that the Subject key was present in the parsed
	// JSON (even if empty): the signed string includes Subject exactly when
	// SNS sent it.
	subjectPresent bool
}

// UnmarshalJSON decodes m, remembering whether Subject was present.
func (m *Message) UnmarshalJSON(b []byte) error { return m.decode(b) }

// decode is UnmarshalJSON; Parse calls it directly, so that the body is
// read once (json.Unmarshal into a Message would check the whole body and
// then hand it to UnmarshalJSON to be read again).
func (m *Message) decode(b []byte) error {
	type plain Message
	var w struct {
		plain
		// Shadows plain.Subject (shallower depth wins) to see presence; a
		// JSON null counts as absent, as in Lambda events.
		Subject *string `json:"Subject"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message(w.plain)
	m.Subject, m.subjectPresent = "", false
	if w.Subject != nil {
		m.Subject, m.subjectPresent = *w.Subject, true
	}
	return nil
}

// HasSubject reports whether the Subject takes part in the string to sign:
// it was present in the parsed JSON, or it is non-empty.
func (m *Message) HasSubject() bool { return m.subjectPresent || m.Subject != "" }

// Parse decodes an SNS delivery body and checks that the fields needed to
// authenticate and act on it are present. Errors wrap ErrMalformed or
// ErrUnknownType.
func Parse(body []byte) (*Message, error) {
	var m Message
	if err := m.decode(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch m.Type {
	case TypeNotification, TypeSubscriptionConfirmation, TypeUnsubscribeConfirmation:
	case "":
		return nil, malformed("Type")
	default:
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownType, m.Type)
	}
	required := []struct{ name, value string }{
		{"MessageId", m.MessageId},
		{"TopicArn", m.TopicArn},
		{"Timestamp", m.Timestamp},
		{"SignatureVersion", m.SignatureVersion},
		{"Signature", m.Signature},
		{"SigningCertURL", m.SigningCertURL},
	}
	if m.Type != TypeNotification {
		required = append(required,
			struct{ name, value string }{"Token", m.Token},
			struct{ name, value string }{"SubscribeURL", m.SubscribeURL})
	}
	for _, f := range required {
		if f.value == "" {
			return nil, malformed(f.name)
		}
	}
	return &m, nil
}

func malformed(field string) error {
	return fmt.Errorf("%w: missing %s", ErrMalformed, field)
}

// StringToSign returns the canonical string SNS signs: for a Notification
// the fields Message, MessageId, Subject (only if present), Timestamp,
// TopicArn and Type; for the two confirmation types Message, MessageId,
// SubscribeURL, Timestamp, Token, TopicArn and Type. Each field is written as
// "Name\nvalue\n".
func (m *Message) StringToSign() ([]byte, error) {
	type field struct{ name, value string }
	var fields []field
	switch m.Type {
	case TypeNotification:
		fields = append(fields, field{"Message", m.Message}, field{"MessageId", m.MessageId})
		if m.HasSubject() {
			fields = append(fields, field{"Subject", m.Subject})
		}
		fields = append(fields,
			field{"Timestamp", m.Timestamp},
			field{"TopicArn", m.TopicArn},
			field{"Type", m.Type})
	case TypeSubscriptionConfirmation, TypeUnsubscribeConfirmation:
		fields = []field{
			{"Message", m.Message},
			{"MessageId", m.MessageId},
			{"SubscribeURL", m.SubscribeURL},
			{"Timestamp", m.Timestamp},
			{"Token", m.Token},
			{"TopicArn", m.TopicArn},
			{"Type", m.Type},
		}
	default:
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownType, m.Type)
	}
	n := 0
	for _, f := range fields {
		n += len(f.name) + len(f.value) + 2
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = append(b, f.name...)
		b = append(b, '\n')
		b = append(b, f.value...)
		b = append(b, '\n')
	}
	return b, nil
}
