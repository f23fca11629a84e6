// Package sesnotify parses the notifications Amazon SES publishes to SNS:
// email receiving notifications ("Received": mail metadata, the receipt with
// spam/virus/SPF/DKIM/DMARC verdicts and the action that ran, and for the SNS
// action the mail itself) and, when a sending topic shares the subscription,
// "Bounce" and "Complaint" notifications, kept raw.
//
// Field names follow "Contents of notifications for Amazon SES email
// receiving" in the SES developer guide.
package sesnotify

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// Notification types.
const (
	TypeReceived  = "Received"
	TypeBounce    = "Bounce"
	TypeComplaint = "Complaint"
)

// Receipt action types that matter to the relay (others: Bounce, Lambda,
// Stop, WorkMail, AddHeader).
const (
	ActionS3  = "S3"
	ActionSNS = "SNS"
)

// Content encodings of the SNS action.
const (
	EncodingUTF8   = "UTF8"
	EncodingBase64 = "BASE64"
)

// Verdict statuses.
const (
	StatusPass           = "PASS"
	StatusFail           = "FAIL"
	StatusGray           = "GRAY"
	StatusProcessingFail = "PROCESSING_FAILED"
	StatusDisabled       = "DISABLED"
)

// ErrMalformed is wrapped by every Parse and InlineContent error.
var ErrMalformed = errors.New("sesnotify: malformed notification")

// Notification is an SES notification (the SNS Message field).
type Notification struct {
	NotificationType string   `json:"notificationType"`
	Mail             Mail     `json:"mail"`
	Receipt          *Receipt `json:"receipt,omitempty"` // Received only
	// Content is the raw mail, present only for the SNS action, encoded as
	// Receipt.Action.Encoding says. See InlineContent.
	Content   string          `json:"content,omitempty"`
	Bounce    json.RawMessage `json:"bounce,omitempty"`
	Complaint json.RawMessage `json:"complaint,omitempty"`
}

// Mail describes the received message.
type Mail struct {
	Timestamp        time.Time `json:"timestamp"`
	Source           string    `json:"source"` // envelope MAIL FROM
	SourceArn        string    `json:"sourceArn,omitempty"`
	SourceIP         string    `json:"sourceIp,omitempty"`
	SendingAccountID string    `json:"sendingAccountId,omitempty"`
	MessageID        string    `json:"messageId"` // SES message id; the S3 object key of the S3 action
	Destination      []string  `json:"destination"`
	HeadersTruncated bool      `json:"headersTruncated"`
	Headers          []Header  `json:"headers,omitempty"`
	// HeadersListed says whether the notification listed any header (set
	// by Parse and ParseBrief; ParseBrief leaves Headers nil).
	HeadersListed bool          `json:"-"`
	CommonHeaders CommonHeaders `json:"commonHeaders"`
}

// Header is one mail header as SES lists it.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// CommonHeaders are the headers SES extracts.
type CommonHeaders struct {
	ReturnPath string   `json:"returnPath,omitempty"`
	From       []string `json:"from,omitempty"`
	ReplyTo    []string `json:"replyTo,omitempty"`
	Date       string   `json:"date,omitempty"`
	To         []string `json:"to,omitempty"`
	Cc         []string `json:"cc,omitempty"`
	MessageID  string   `json:"messageId,omitempty"`
	Subject    string   `json:"subject,omitempty"`
}

// Receipt describes the delivery to SES and the checks it ran.
type Receipt struct {
	Timestamp time.Time `json:"timestamp"`
	// ProcessingTimeMillis is documented as a string and sent as a number.
	ProcessingTimeMillis json.Number `json:"processingTimeMillis,omitempty"`
	// Recipients are the envelope RCPT TO addresses the rule matched.
	Recipients   []string `json:"recipients"`
	SpamVerdict  Verdict  `json:"spamVerdict,omitzero"`
	VirusVerdict Verdict  `json:"virusVerdict,omitzero"`
	SPFVerdict   Verdict  `json:"spfVerdict,omitzero"`
	DKIMVerdict  Verdict  `json:"dkimVerdict,omitzero"`
	DMARCVerdict Verdict  `json:"dmarcVerdict,omitzero"`
	// DMARCPolicy ("none", "quarantine", "reject") is present only when the
	// message failed DMARC.
	DMARCPolicy string `json:"dmarcPolicy,omitempty"`
	Action      Action `json:"action"`
}

// Verdict is the result of one check.
type Verdict struct {
	Status string `json:"status"`
}

// Action is the receipt rule action that published the notification.
type Action struct {
	Type            string `json:"type"` // ActionS3, ActionSNS, ...
	TopicArn        string `json:"topicArn,omitempty"`
	BucketName      string `json:"bucketName,omitempty"`      // S3
	ObjectKeyPrefix string `json:"objectKeyPrefix,omitempty"` // S3
	ObjectKey       string `json:"objectKey,omitempty"`       // S3: full key of the stored mail
	Encoding        string `json:"encoding,omitempty"`        // SNS: EncodingUTF8 or EncodingBase64
}

// Parse decodes an SES notification and checks it is one the relay can act
// on: a known notificationType, a mail.messageId, and for Received a receipt
// with an action type (and a bucket for S3). Errors are
// failure.Permanent(failure.ReasonMalformedNotification) wrapping ErrMalformed.
func Parse(b []byte) (*Notification, error) {
	var n Notification
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, malformed("%v", err)
	}
	n.Mail.HeadersListed = len(n.Mail.Headers) > 0
	return check(&n)
}

// ParseBrief is Parse without decoding mail.headers and mail.commonHeaders
// (they are skipped, still checked to be well-formed JSON): Headers is nil,
// CommonHeaders zero, HeadersListed says whether any header was listed. The
// header list is most of a notification's decoding cost, and the intake
// and the workers need none of it.
func ParseBrief(b []byte) (*Notification, error) {
	if n, ok := parseFast(b); ok {
		return check(n)
	}
	n, err := decodeBrief(b)
	if err != nil {
		return nil, malformed("%v", err)
	}
	return check(n)
}

// decodeBrief is ParseBrief's decoding with encoding/json (before check).
func decodeBrief(b []byte) (*Notification, error) {
	var w struct {
		NotificationType string `json:"notificationType"`
		Mail             struct {
			Timestamp        time.Time      `json:"timestamp"`
			Source           string         `json:"source"`
			SourceArn        string         `json:"sourceArn"`
			SourceIP         string         `json:"sourceIp"`
			SendingAccountID string         `json:"sendingAccountId"`
			MessageID        string         `json:"messageId"`
			Destination      []string       `json:"destination"`
			HeadersTruncated bool           `json:"headersTruncated"`
			Headers          headerPresence `json:"headers"`
			// commonHeaders: not a field, skipped.
		} `json:"mail"`
		Receipt   *Receipt        `json:"receipt"`
		Content   string          `json:"content"`
		Bounce    json.RawMessage `json:"bounce"`
		Complaint json.RawMessage `json:"complaint"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	m := w.Mail
	return &Notification{
		NotificationType: w.NotificationType,
		Mail: Mail{Timestamp: m.Timestamp, Source: m.Source, SourceArn: m.SourceArn, SourceIP: m.SourceIP,
			SendingAccountID: m.SendingAccountID, MessageID: m.MessageID, Destination: m.Destination,
			HeadersTruncated: m.HeadersTruncated, HeadersListed: bool(m.Headers)},
		Receipt: w.Receipt, Content: w.Content, Bounce: w.Bounce, Complaint: w.Complaint,
	}, nil
}

// headerPresence decodes a header list into whether it has any element,
// without decoding the elements' strings (each must still be an object).
type headerPresence bool

func (h *headerPresence) UnmarshalJSON(b []byte) error {
	var l []struct{} // zero-size elements: nothing decoded, nothing allocated per header
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*h = len(l) > 0
	return nil
}

// check applies Parse's rules to a decoded notification.
func check(n *Notification) (*Notification, error) {
	switch n.NotificationType {
	case TypeReceived:
		if n.Receipt == nil {
			return nil, malformed("Received notification without receipt")
		}
		switch a := n.Receipt.Action; a.Type {
		case "":
			return nil, malformed("receipt without action type")
		case ActionS3:
			if a.BucketName == "" {
				return nil, malformed("S3 action without bucketName")
			}
		case ActionSNS:
			switch a.Encoding {
			case "", EncodingUTF8, EncodingBase64:
			default:
				return nil, malformed("SNS action encoding %.32q", a.Encoding)
			}
		}
	case TypeBounce, TypeComplaint:
	case "":
		return nil, malformed("no notificationType")
	default:
		return nil, malformed("notificationType %.32q", n.NotificationType)
	}
	if n.Mail.MessageID == "" {
		return nil, malformed("no mail.messageId")
	}
	return n, nil
}

func malformed(format string, args ...any) error {
	return failure.Permanent(failure.ReasonMalformedNotification, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...)))
}

// InlineContent returns the mail carried in the notification (SNS action),
// decoded per the action's encoding (BASE64, or UTF8 when absent), and
// whether there was any. A notification without content (S3 action) returns
// nil, false, nil.
func (n *Notification) InlineContent() ([]byte, bool, error) {
	if n.Content == "" {
		return nil, false, nil
	}
	enc := ""
	if n.Receipt != nil {
		enc = n.Receipt.Action.Encoding
	}
	switch enc {
	case "", EncodingUTF8:
		return []byte(n.Content), true, nil
	case EncodingBase64:
		// SES may wrap base64 lines; the standard decoder skips \r and \n
		// but not other whitespace.
		s := n.Content
		if strings.ContainsAny(s, " \t") {
			s = strings.Map(func(r rune) rune {
				if r == ' ' || r == '\t' {
					return -1
				}
				return r
			}, s)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, true, malformed("content not base64: %v", err)
		}
		return b, true, nil
	}
	return nil, true, malformed("content encoding %.32q", enc)
}
