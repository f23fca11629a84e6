package sns_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// A notification as SNS delivers it over HTTP (values made up).
const notificationJSON = `{
  "Type" : "Notification",
  "MessageId" : "5a1b9f3e-2c4d-5e6f-8a9b-0c1d2e3f4a5b",
  "TopicArn" : "arn:aws:sns:eu-west-1:111122223333:ses-inbound",
  "Subject" : "Amazon SES Email Receipt Notification",
  "Message" : "{\"notificationType\":\"Received\"}",
  "Timestamp" : "2024-03-01T10:11:12.345Z",
  "SignatureVersion" : "1",
  "Signature" : "c2lnbmF0dXJl",
  "SigningCertURL" : "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
  "UnsubscribeURL" : "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1:111122223333:ses-inbound:1234"
}`

const confirmationJSON = `{
  "Type" : "SubscriptionConfirmation",
  "MessageId" : "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
  "Token" : "2336412f37fb687f5d51e6e2425",
  "TopicArn" : "arn:aws:sns:eu-west-1:111122223333:ses-inbound",
  "Message" : "You have chosen to subscribe to the topic arn:aws:sns:eu-west-1:111122223333:ses-inbound.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
  "SubscribeURL" : "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:111122223333:ses-inbound&Token=2336412f37fb687f5d51e6e2425",
  "Timestamp" : "2024-03-01T10:11:12.345Z",
  "SignatureVersion" : "2",
  "Signature" : "c2lnbmF0dXJl",
  "SigningCertURL" : "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
}`

// A Lambda-style spelling of the certificate URL key.
const lambdaSpellingJSON = `{"Type":"Notification","MessageId":"m1","TopicArn":"arn:t","Message":"x",
  "Timestamp":"2024-03-01T10:11:12.345Z","SignatureVersion":"1","Signature":"c2ln",
  "SigningCertUrl":"https://sns.us-east-1.amazonaws.com/x.pem","UnsubscribeUrl":"https://sns.us-east-1.amazonaws.com/?a"}`

var parseTests = []struct {
	name string
	body string
	err  error // nil: success
}{
	{"notification", notificationJSON, nil},
	{"subscription confirmation", confirmationJSON, nil},
	{"lambda key spelling", lambdaSpellingJSON, nil},
	{"unsubscribe confirmation", `{"Type":"UnsubscribeConfirmation","MessageId":"m","Token":"t","TopicArn":"a","Message":"m","SubscribeURL":"https://sns.us-east-1.amazonaws.com/?x","Timestamp":"t","SignatureVersion":"1","Signature":"s","SigningCertURL":"u"}`, nil},
	{"not json", `not json`, sns.ErrMalformed},
	{"empty", ``, sns.ErrMalformed},
	{"json array", `[]`, sns.ErrMalformed},
	{"wrong field type", `{"Type":1}`, sns.ErrMalformed},
	{"trailing garbage", notificationJSON + `x`, sns.ErrMalformed},
	{"no type", `{"MessageId":"m"}`, sns.ErrMalformed},
	{"unknown type", `{"Type":"Bogus","MessageId":"m"}`, sns.ErrUnknownType},
	{"unsubscription spelled wrong", `{"Type":"UnsubscriptionConfirmation"}`, sns.ErrUnknownType},
	{"missing message id", `{"Type":"Notification","TopicArn":"a","Message":"m","Timestamp":"t","SignatureVersion":"1","Signature":"s","SigningCertURL":"u"}`, sns.ErrMalformed},
	{"missing signature", `{"Type":"Notification","MessageId":"m","TopicArn":"a","Message":"m","Timestamp":"t","SignatureVersion":"1","SigningCertURL":"u"}`, sns.ErrMalformed},
	{"missing cert url", `{"Type":"Notification","MessageId":"m","TopicArn":"a","Message":"m","Timestamp":"t","SignatureVersion":"1","Signature":"s"}`, sns.ErrMalformed},
	{"confirmation missing token", `{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"a","Message":"m","SubscribeURL":"x","Timestamp":"t","SignatureVersion":"1","Signature":"s","SigningCertURL":"u"}`, sns.ErrMalformed},
	{"confirmation missing subscribe url", `{"Type":"SubscriptionConfirmation","MessageId":"m","Token":"t","TopicArn":"a","Message":"m","Timestamp":"t","SignatureVersion":"1","Signature":"s","SigningCertURL":"u"}`, sns.ErrMalformed},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sns.Parse([]byte(tt.body))
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if m.MessageId == "" || m.SigningCertURL == "" {
					t.Errorf("fields lost: %+v", m)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse error %v, want %v", err, tt.err)
			}
			if retryable(err) {
				t.Errorf("error %v not permanent", err)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	m, err := sns.Parse([]byte(notificationJSON))
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != sns.TypeNotification || m.TopicArn != "arn:aws:sns:eu-west-1:111122223333:ses-inbound" ||
		m.Message != `{"notificationType":"Received"}` || m.Subject != "Amazon SES Email Receipt Notification" ||
		m.Timestamp != "2024-03-01T10:11:12.345Z" || m.SignatureVersion != "1" || m.Signature != "c2lnbmF0dXJl" {
		t.Errorf("unexpected fields %+v", m)
	}
	m, err = sns.Parse([]byte(lambdaSpellingJSON))
	if err != nil {
		t.Fatal(err)
	}
	if m.SigningCertURL != "https://sns.us-east-1.amazonaws.com/x.pem" || m.UnsubscribeURL != "https://sns.us-east-1.amazonaws.com/?a" {
		t.Errorf("Url spellings not decoded: %+v", m)
	}
}

func TestStringToSign(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"notification with subject", notificationJSON,
			"Message\n{\"notificationType\":\"Received\"}\n" +
				"MessageId\n5a1b9f3e-2c4d-5e6f-8a9b-0c1d2e3f4a5b\n" +
				"Subject\nAmazon SES Email Receipt Notification\n" +
				"Timestamp\n2024-03-01T10:11:12.345Z\n" +
				"TopicArn\narn:aws:sns:eu-west-1:111122223333:ses-inbound\n" +
				"Type\nNotification\n"},
		{"notification without subject",
			`{"Type":"Notification","MessageId":"m1","TopicArn":"arn:t","Message":"hello\nworld","Timestamp":"ts","UnsubscribeURL":"u"}`,
			"Message\nhello\nworld\nMessageId\nm1\nTimestamp\nts\nTopicArn\narn:t\nType\nNotification\n"},
		{"notification with null subject (lambda)",
			`{"Type":"Notification","MessageId":"m1","TopicArn":"arn:t","Subject":null,"Message":"x","Timestamp":"ts"}`,
			"Message\nx\nMessageId\nm1\nTimestamp\nts\nTopicArn\narn:t\nType\nNotification\n"},
		{"notification with empty subject present",
			`{"Type":"Notification","MessageId":"m1","TopicArn":"arn:t","Subject":"","Message":"x","Timestamp":"ts"}`,
			"Message\nx\nMessageId\nm1\nSubject\n\nTimestamp\nts\nTopicArn\narn:t\nType\nNotification\n"},
		{"subscription confirmation", confirmationJSON,
			"Message\nYou have chosen to subscribe to the topic arn:aws:sns:eu-west-1:111122223333:ses-inbound.\nTo confirm the subscription, visit the SubscribeURL included in this message.\n" +
				"MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n" +
				"SubscribeURL\nhttps://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:111122223333:ses-inbound&Token=2336412f37fb687f5d51e6e2425\n" +
				"Timestamp\n2024-03-01T10:11:12.345Z\n" +
				"Token\n2336412f37fb687f5d51e6e2425\n" +
				"TopicArn\narn:aws:sns:eu-west-1:111122223333:ses-inbound\n" +
				"Type\nSubscriptionConfirmation\n"},
		{"unsubscribe confirmation ignores subject",
			`{"Type":"UnsubscribeConfirmation","MessageId":"m","Token":"tk","TopicArn":"a","Subject":"s","Message":"msg","SubscribeURL":"su","Timestamp":"ts"}`,
			"Message\nmsg\nMessageId\nm\nSubscribeURL\nsu\nTimestamp\nts\nToken\ntk\nTopicArn\na\nType\nUnsubscribeConfirmation\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m sns.Message
			if err := m.UnmarshalJSON([]byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			got, err := m.StringToSign()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("StringToSign:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if _, err := (&sns.Message{Type: "Other"}).StringToSign(); !errors.Is(err, sns.ErrUnknownType) {
		t.Errorf("unknown type: err %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := sns.Parse(body)
		if err != nil {
			if !errors.Is(err, sns.ErrMalformed) && !errors.Is(err, sns.ErrUnknownType) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if m.MessageId == "" || m.TopicArn == "" || m.Signature == "" {
			t.Fatalf("accepted message lacks required fields: %+v", m)
		}
		if _, err := m.StringToSign(); err != nil {
			t.Fatalf("StringToSign of a parsed message: %v", err)
		}
	})
}

// retryable reports whether err is one of the failures SNS's redelivery may
// cure (the package's two transient sentinels): every other error must
// fail the same way when tried again.
func retryable(err error) bool {
	return errors.Is(err, sns.ErrCertFetch) || errors.Is(err, sns.ErrConfirm)
}

// BenchmarkParse parses a signed delivery of an SES notification (about
// 3 KB, the Message an escaped JSON string), as the intake does for every
// notification before it checks the signature.
func BenchmarkParse(b *testing.B) {
	s, err := snstest.NewSigner()
	if err != nil {
		b.Fatal(err)
	}
	_, stop := s.Serve()
	defer stop()
	inner := `{"notificationType":"Received","mail":{"timestamp":"2026-11-23T10:00:00.000Z","source":"dora@example.net",` +
		`"messageId":"o3vrnil0e2ic28trm7dfhrc2v0cnbnfsj0rtiqg1","destination":["shop@relay.example.com"],"headersTruncated":false,` +
		`"headers":[` + strings.Repeat(`{"name":"X-Header","value":"some value of a header, escaped \"here\""},`, 20) +
		`{"name":"Subject","value":"hi"}]},"receipt":{"recipients":["shop@relay.example.com"],"spamVerdict":{"status":"PASS"},` +
		`"virusVerdict":{"status":"PASS"},"spfVerdict":{"status":"PASS"},"dkimVerdict":{"status":"PASS"},"dmarcVerdict":{"status":"PASS"},` +
		`"action":{"type":"S3","topicArn":"arn:aws:sns:us-east-1:123456789012:mailrelay-inbound","bucketName":"b","objectKey":"inbound/k"}}}`
	body := s.Notification("arn:aws:sns:us-east-1:123456789012:mailrelay-inbound", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"Amazon SES Email Receipt Notification", inner, "2")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sns.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}
