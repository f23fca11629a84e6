package sesnotify

import (
	"reflect"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// sameBrief reports whether ParseBrief's answer is Parse's without the
// header list and common headers.
func sameBrief(t *testing.T, b []byte) {
	t.Helper()
	full, ferr := Parse(b)
	brief, berr := ParseBrief(b)
	if (ferr == nil) != (berr == nil) {
		t.Fatalf("Parse error %v, ParseBrief error %v", ferr, berr)
	}
	if ferr != nil {
		return
	}
	want := *full
	want.Mail.Headers, want.Mail.CommonHeaders = nil, CommonHeaders{}
	if !reflect.DeepEqual(*brief, want) {
		t.Fatalf("ParseBrief:\n%+v\nwant\n%+v", *brief, want)
	}
}

func TestParseBrief(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"received_s3", mailtest.Notification("received_s3.json")},
		{"received_sns_utf8", mailtest.Notification("received_sns_utf8.json")},
		{"received_sns_base64", mailtest.Notification("received_sns_base64.json")},
		{"bounce", mailtest.Notification("bounce.json")},
		{"complaint", mailtest.Notification("complaint.json")},
		{"empty header list", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m","headers":[ ]}}`)},
		{"null header list", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m","headers":null}}`)},
		{"header not an object", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m","headers":[1]}}`)},
		{"headers not a list", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m","headers":{}}}`)},
		// parseFast's refusals: encoding/json decides these.
		{"name in another case", []byte(`{"notificationType":"Bounce","mail":{"MessageId":"m"}}`)},
		{"repeated name", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m","messageId":"n"}}`)},
		{"escaped value", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m\u0041\"x"}}`)},
		{"escaped name", []byte(`{"notificationType":"Bounce","mail":{"message\u0049d":"m"}}`)},
		{"null value", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m","source":null}}`)},
		{"kelvin sign", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m"},"\u212aomplaint":{}}`)},
		{"not UTF-8", []byte("{\"notificationType\":\"Bounce\",\"mail\":{\"messageId\":\"m\xff\"}}")},
		{"number as string", []byte(`{"notificationType":"Received","mail":{"messageId":"m"},"receipt":{"processingTimeMillis":"12","action":{"type":"S3","bucketName":"b"}}}`)},
		{"unknown members", []byte(`{"x":[{"a":"]}"},1.5e3,true,null],"notificationType":"Received","mail":{"messageId":"m","commonHeaders":{"from":["a\"b"]}},"receipt":{"spamVerdict":{"status":"PASS","y":1},"action":{"type":"S3","bucketName":"b"}},"bounce":{"k":[1,2]}}`)},
		{"trailing data", []byte(`{"notificationType":"Bounce","mail":{"messageId":"m"}} {}`)},
	}
	for _, tt := range malformedTests {
		tests = append(tests, struct {
			name string
			body []byte
		}{"malformed " + tt.name, []byte(tt.body)})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { sameBrief(t, tc.body) })
	}
	n, err := ParseBrief(mailtest.Notification("received_s3.json"))
	if err != nil || !n.Mail.HeadersListed {
		t.Fatalf("received_s3.json: HeadersListed %v, %v; want true", n != nil && n.Mail.HeadersListed, err)
	}
}

func FuzzParseBrief(f *testing.F) {
	for _, name := range []string{"received_sns_utf8.json", "received_sns_base64.json", "received_s3.json", "bounce.json", "complaint.json"} {
		f.Add(mailtest.Notification(name))
	}
	for _, tt := range malformedTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameBrief(t, b) })
}
