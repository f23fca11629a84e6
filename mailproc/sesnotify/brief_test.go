package sesnotify

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
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
		t.Run(tc.name, func(t *testing.T) {
			sameAsJSON(t, tc.body)
			sameBrief(t, tc.body)
		})
	}
	// received_sns_utf8.json's content has escapes (\r\n): encoding/json decodes it.
	for _, name := range []string{"received_s3.json", "received_sns_base64.json", "bounce.json", "complaint.json"} {
		if _, ok := parseFast(mailtest.Notification(name)); !ok {
			t.Errorf("parseFast refused %s: encoding/json decodes what SES writes", name)
		}
	}
	n, err := ParseBrief(mailtest.Notification("received_s3.json"))
	if err != nil || !n.Mail.HeadersListed {
		t.Fatalf("received_s3.json: HeadersListed %v, %v; want true", n != nil && n.Mail.HeadersListed, err)
	}
}

// sameAsJSON checks parseFast against encoding/json: what it accepts,
// json.Valid accepts and decodeBrief decodes to the same notification; and
// the scanner's grammar (scanValid) is json.Valid's (but for nesting
// deeper than maxDepth, which the scanner leaves to encoding/json).
func sameAsJSON(t *testing.T, b []byte) {
	t.Helper()
	valid := json.Valid(b)
	if got := scanValid(b); got != valid && (valid && bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) < maxDepth || !valid) {
		t.Fatalf("scanValid %v, json.Valid %v", got, valid)
	}
	fast, ok := parseFast(b)
	if !ok {
		return
	}
	if !valid {
		t.Fatalf("parseFast accepted what json.Valid refuses")
	}
	slow, err := decodeBrief(b)
	if err != nil {
		t.Fatalf("parseFast accepted what encoding/json refuses: %v", err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("parseFast:\n%+v\nencoding/json:\n%+v", *fast, *slow)
	}
}

// grammarCorners are JSON values, valid or not, at the corners of the
// grammar the scanner checks; briefWith puts each where parseFast skips it
// and where it reads it.
var grammarCorners = []string{
	`0`, `-0`, `01`, `-01`, `1.`, `1.5`, `.5`, `-`, `+1`, `1e`, `1e+`, `1E-2`, `1e5x`, `0x10`, `1.0e+10`, `--1`, `1..2`, `Infinity`, `NaN`,
	`"a\"b"`, `"\u0041"`, `"\u004"`, `"\u00zz"`, `"\x"`, `"\`, `"\'"`, `"\/"`, `"\ud800"`, `"\ud83d\ude00"`,
	"\"a\tb\"", "\"a\x00b\"", "\"a\x1fb\"", "\"a\x7fb\"", "\"\xff\"", "\"\xc3\xa9\"", "\"\xed\xa0\x80\"", `"unterminated`,
	`"12"`, `""`, `"-"`, `"1e5"`, `" 1"`, `"01"`, `"1\u0030"`,
	`true`, `false`, `null`, `tru`, `nul`, `True`, `truex`, `nullx`,
	`[]`, `[1,]`, `[,1]`, `[1 2]`, `[1,,2]`, `[`, `]`, `{}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`, `{"a":1 "b":2}`, `{"a":1,"a":2}`,
	"[ 1 ,\t2\r\n]", "\v1", "1 x", "{} {}", "{}x", "\xef\xbb\xbf{}",
	strings.Repeat("[", maxDepth-5) + strings.Repeat("]", maxDepth-5),
	strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
	strings.Repeat(`{"a":`, 50) + "1" + strings.Repeat("}", 50),
	strings.Repeat("[", 20) + strings.Repeat("]", 19),
	strings.Repeat(`"d@x",`, 30) + `"e@x"`, // more kept strings than scanner.spans
}

// briefWith returns notifications holding v as an unknown member, as a
// kept string, number and list, as a raw bounce, and after the value.
func briefWith(v string) []string {
	return []string{
		v,
		`{"notificationType":"Bounce","mail":{"messageId":"m"},"x":` + v + `}`,
		`{"notificationType":"Bounce","mail":{"messageId":"m","commonHeaders":{"x":[` + v + `]}}}`,
		`{"notificationType":"Bounce","mail":{"messageId":` + v + `}}`,
		`{"notificationType":"Bounce","mail":{"messageId":"m","destination":[` + v + `]}}`,
		`{"notificationType":"Bounce","mail":{"messageId":"m","headersTruncated":` + v + `,"headers":[{"x":` + v + `}]}}`,
		`{"notificationType":"Bounce","mail":{"messageId":"m"},"bounce":` + v + `}`,
		`{"notificationType":"Received","mail":{"messageId":"m"},"receipt":{"processingTimeMillis":` + v + `,"action":{"type":"S3","bucketName":"b"}}}`,
		`{"notificationType":"Bounce","mail":{"messageId":"m"}}` + v,
	}
}

func TestParseFastGrammar(t *testing.T) {
	for _, v := range grammarCorners {
		for _, b := range briefWith(v) {
			t.Run(b[:min(len(b), 60)], func(t *testing.T) {
				sameAsJSON(t, []byte(b))
				sameBrief(t, []byte(b))
			})
		}
	}
}

func FuzzParseBrief(f *testing.F) {
	for _, v := range grammarCorners {
		for _, b := range briefWith(v) {
			f.Add([]byte(b))
		}
	}
	for _, name := range []string{"received_sns_utf8.json", "received_sns_base64.json", "received_s3.json", "bounce.json", "complaint.json"} {
		f.Add(mailtest.Notification(name))
	}
	for _, tt := range malformedTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsJSON(t, b)
		sameBrief(t, b)
	})
}
