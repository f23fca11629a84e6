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
