package fakes

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	sestypes "github.com/aws/aws-sdk-go-v2/service/ses/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sesv2types "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// testConfig is an AWS config independent of the machine's environment:
// static credentials, one attempt.
func testConfig() aws.Config {
	return aws.Config{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
}

func startSES(t *testing.T, opts SESOptions) *SES {
	t.Helper()
	s := NewSES(opts)
	if err := s.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

const testMail = "From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody \x00\xff bytes\r\n"

func TestSESv1SendRawEmail(t *testing.T) {
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	s := startSES(t, SESOptions{Now: func() time.Time { return now }})
	c := ses.NewFromConfig(testConfig(), func(o *ses.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	out, err := c.SendRawEmail(context.Background(), &ses.SendRawEmailInput{
		Source:       aws.String("shop@relay.example.com"),
		Destinations: []string{"alice@example.org", "bob@example.org"},
		RawMessage:   &sestypes.RawMessage{Data: []byte(testMail)},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := s.Sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d mails, want 1", len(sent))
	}
	m := sent[0]
	if aws.ToString(out.MessageId) != m.ID || m.ID == "" {
		t.Errorf("message id %q, recorded %q", aws.ToString(out.MessageId), m.ID)
	}
	if m.Source != "shop@relay.example.com" || !slices.Equal(m.Destinations, []string{"alice@example.org", "bob@example.org"}) {
		t.Errorf("envelope %q %q", m.Source, m.Destinations)
	}
	if string(m.Raw) != testMail || m.API != "ses" || !m.At.Equal(now) {
		t.Errorf("recorded %+v", m)
	}
}

func TestSESv2SendEmail(t *testing.T) {
	s := startSES(t, SESOptions{})
	c := sesv2.NewFromConfig(testConfig(), func(o *sesv2.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	out, err := c.SendEmail(context.Background(), &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("shop@relay.example.com"),
		Destination:      &sesv2types.Destination{ToAddresses: []string{"alice@example.org"}, BccAddresses: []string{"c@example.org"}},
		Content:          &sesv2types.EmailContent{Raw: &sesv2types.RawMessage{Data: []byte(testMail)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := s.Sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d mails, want 1", len(sent))
	}
	m := sent[0]
	if aws.ToString(out.MessageId) != m.ID || m.API != "sesv2" || string(m.Raw) != testMail {
		t.Errorf("recorded %+v, answered %q", m, aws.ToString(out.MessageId))
	}
	if m.Source != "shop@relay.example.com" || !slices.Equal(m.Destinations, []string{"alice@example.org", "c@example.org"}) {
		t.Errorf("envelope %q %q", m.Source, m.Destinations)
	}
}

// TestSESErrors checks that injected errors reach the SDK with the code and
// status real SES uses, on both APIs.
func TestSESErrors(t *testing.T) {
	tests := []struct {
		err              error
		v1Code, v2Code   string
		v1Status, v2Stat int
	}{
		{ErrThrottling, "Throttling", "TooManyRequestsException", 400, 429},
		{ErrMessageRejected, "MessageRejected", "MessageRejected", 400, 400},
		{ErrInvalidParameter, "InvalidParameterValue", "BadRequestException", 400, 400},
		{ErrMailFromNotVerified, "MailFromDomainNotVerifiedException", "MailFromDomainNotVerifiedException", 400, 400},
		{ErrAccessDenied, "AccessDenied", "AccessDeniedException", 403, 403},
		{ErrInternal, "InternalFailure", "InternalServiceErrorException", 500, 500},
		{errors.New("hook failed"), "InternalFailure", "InternalServiceErrorException", 500, 500},
	}
	s := startSES(t, SESOptions{})
	v1 := ses.NewFromConfig(testConfig(), func(o *ses.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	v2 := sesv2.NewFromConfig(testConfig(), func(o *sesv2.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.v1Code, func(t *testing.T) {
			s.Fail(tt.err)
			_, err := v1.SendRawEmail(ctx, &ses.SendRawEmailInput{Destinations: []string{"a@example.org"}, RawMessage: &sestypes.RawMessage{Data: []byte(testMail)}})
			checkAPIError(t, err, tt.v1Code, tt.v1Status)

			s.Fail(tt.err)
			_, err = v2.SendEmail(ctx, &sesv2.SendEmailInput{
				Destination: &sesv2types.Destination{ToAddresses: []string{"a@example.org"}},
				Content:     &sesv2types.EmailContent{Raw: &sesv2types.RawMessage{Data: []byte(testMail)}},
			})
			checkAPIError(t, err, tt.v2Code, tt.v2Stat)
		})
	}
	if n := len(s.Sent()); n != 0 {
		t.Errorf("%d failed sends recorded", n)
	}
}

func checkAPIError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an API error", err)
	}
	if ae.ErrorCode() != code {
		t.Errorf("code %q, want %q", ae.ErrorCode(), code)
	}
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Errorf("error %v: want status %d", err, status)
	}
}

func TestSESOnSendAndEML(t *testing.T) {
	dir := t.TempDir()
	var seen []string
	s := startSES(t, SESOptions{EMLDir: dir, OnSend: func(m Sent) error {
		seen = append(seen, m.ID) // requests are sequential in this test
		if slices.Contains(m.Destinations, "reject@example.org") {
			return ErrMessageRejected
		}
		return nil
	}})
	c := ses.NewFromConfig(testConfig(), func(o *ses.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	send := func(to string) (string, error) {
		out, err := c.SendRawEmail(context.Background(), &ses.SendRawEmailInput{Destinations: []string{to}, RawMessage: &sestypes.RawMessage{Data: []byte(testMail)}})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.MessageId), nil
	}
	if _, err := send("reject@example.org"); err == nil {
		t.Fatal("rejected send succeeded")
	}
	id, err := send("ok@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Errorf("OnSend saw %d sends, want 2", len(seen))
	}
	b, err := os.ReadFile(filepath.Join(dir, id+".eml"))
	if err != nil || string(b) != testMail {
		t.Errorf("eml %q, %v", b, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in eml dir, want 1", len(entries))
	}
}

func TestSESWaitSent(t *testing.T) {
	s := NewSES(SESOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitSent(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSent on nothing: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitSent(context.Background(), 2) }()
	for range 2 {
		if _, err := s.accept(Sent{Raw: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSESBadRequests feeds malformed requests straight to the handler.
func TestSESBadRequests(t *testing.T) {
	s := NewSES(SESOptions{})
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"get", "GET", "/", "", "", 405, "InvalidAction"},
		{"other action", "POST", "/", "application/x-www-form-urlencoded", "Action=SendEmail", 400, "InvalidAction"},
		{"no data", "POST", "/", "application/x-www-form-urlencoded", "Action=SendRawEmail&Destinations.member.1=a%40b", 400, "MissingParameter"},
		{"bad base64", "POST", "/", "application/x-www-form-urlencoded", "Action=SendRawEmail&RawMessage.Data=%%%", 400, "MalformedQueryString"},
		{"bad base64 2", "POST", "/", "application/x-www-form-urlencoded", "Action=SendRawEmail&RawMessage.Data=a!b", 400, "InvalidParameterValue"},
		{"v2 bad json", "POST", "/v2/email/outbound-emails", "application/json", "{", 400, "BadRequestException"},
		{"v2 not raw", "POST", "/v2/email/outbound-emails", "application/json", `{"Content":{"Simple":{}}}`, 400, "BadRequestException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptestRequest(tt.method, tt.path, tt.ctype, tt.body)
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			got := w.Header().Get("X-Amzn-ErrorType")
			if got == "" {
				got = xmlCode(w.Body.String())
			}
			if got != tt.code {
				t.Errorf("code %q, want %q (body %s)", got, tt.code, w.Body.String())
			}
		})
	}
}

func TestParseSendRawEmail(t *testing.T) {
	for _, body := range sendRawSeeds {
		form, err := url.ParseQuery(body)
		if err != nil {
			continue
		}
		m, err := sendRawEmailFromForm(form)
		if err == nil && (len(m.Raw) == 0 || m.API != "ses") {
			t.Errorf("%q: accepted without raw data: %+v", body, m)
		}
	}
	form, _ := url.ParseQuery("Action=SendRawEmail&Source=s%40x&Destinations.member.1=a%40x&Destinations.member.2=b%40x&Destinations.member.4=skipped&RawMessage.Data=aGk%3D")
	m, err := sendRawEmailFromForm(form)
	if err != nil {
		t.Fatal(err)
	}
	if m.Source != "s@x" || !slices.Equal(m.Destinations, []string{"a@x", "b@x"}) || string(m.Raw) != "hi" {
		t.Errorf("parsed %+v", m)
	}
}

var sendRawSeeds = []string{
	"Action=SendRawEmail&RawMessage.Data=aGk%3D",
	"Action=SendRawEmail&Destinations.member.1=a%40b&RawMessage.Data=aGk%3D",
	"Action=SendRawEmail",
	"Action=SendEmail&RawMessage.Data=aGk%3D",
	"Action=SendRawEmail&RawMessage.Data=",
	"Action=SendRawEmail&RawMessage.Data=!!",
}

func FuzzSendRawEmailForm(f *testing.F) {
	for _, s := range sendRawSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		m, err := sendRawEmailFromForm(form)
		if err != nil {
			var se *SESError
			if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 SESError", err)
			}
			return
		}
		if len(m.Raw) == 0 || len(m.Destinations) > len(form) {
			t.Fatalf("accepted %+v", m)
		}
	})
}

func FuzzSendEmailV2(f *testing.F) {
	f.Add(`{"FromEmailAddress":"a@b","Destination":{"ToAddresses":["c@d"]},"Content":{"Raw":{"Data":"aGk="}}}`)
	f.Add(`{"Content":{"Raw":{"Data":""}}}`)
	f.Add(`{"Content":{"Simple":{}}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptestRequest("POST", "/v2/email/outbound-emails", "application/json", body)
		m, err := parseSendEmailV2(r)
		if err != nil {
			var se *SESError
			if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 SESError", err)
			}
			return
		}
		if len(m.Raw) == 0 || m.API != "sesv2" {
			t.Fatalf("accepted %+v", m)
		}
	})
}

func TestS3ViaSDK(t *testing.T) {
	fs, err := NewS3()
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if !strings.HasPrefix(fs.URL(), "http://127.0.0.1:") {
		t.Errorf("url %q not on 127.0.0.1", fs.URL())
	}
	data := []byte(testMail)
	if err := fs.Put("inbound", "mail/1", data); err != nil {
		t.Fatal(err)
	}
	if err := fs.Put("inbound", "mail/2", data); err != nil { // bucket exists now
		t.Fatal(err)
	}
	c := s3.NewFromConfig(testConfig(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(fs.URL())
		o.UsePathStyle = true
	})
	ctx := context.Background()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("inbound"), Key: aws.String("mail/1")})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(out.Body)
	out.Body.Close()
	if !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("got %q", buf.Bytes())
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("inbound"), Key: aws.String("mail/1")}); err != nil {
		t.Fatal(err)
	}
	if fs.Has("inbound", "mail/1") || !fs.Has("inbound", "mail/2") {
		t.Errorf("Has after delete: %v %v", fs.Has("inbound", "mail/1"), fs.Has("inbound", "mail/2"))
	}
	if b, err := fs.Get("inbound", "mail/2"); err != nil || !bytes.Equal(b, data) {
		t.Errorf("Get: %q %v", b, err)
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("inbound"), Key: aws.String("mail/1")})
	checkAPIError(t, err, "NoSuchKey", 404)
	if n := fs.Faults().Requests(); n != 3 {
		t.Errorf("%d requests counted, want 3", n)
	}
}

func TestS3Faults(t *testing.T) {
	fs, err := NewS3()
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if err := fs.Put("b", "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	c := s3.NewFromConfig(testConfig(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(fs.URL())
		o.UsePathStyle = true
	})
	get := func(ctx context.Context) error {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
		if err == nil {
			out.Body.Close()
		}
		return err
	}
	ctx := context.Background()
	fs.Faults().Next(1, FaultInternalError)
	fs.Faults().Next(1, FaultSlowDown)
	fs.Faults().Next(1, FaultAccessDenied)
	checkAPIError(t, get(ctx), "InternalError", 500)
	checkAPIError(t, get(ctx), "SlowDown", 503)
	checkAPIError(t, get(ctx), "AccessDenied", 403)
	if err := get(ctx); err != nil {
		t.Fatalf("after faults: %v", err)
	}

	// A hang longer than the caller's patience: the caller's deadline ends it.
	fs.Faults().Next(1, Hang(time.Minute))
	hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := get(hctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	// A short hang then serves the request.
	fs.Faults().Next(1, Hang(time.Millisecond))
	if err := get(ctx); err != nil {
		t.Fatalf("short hang: %v", err)
	}
	fs.Faults().Next(3, FaultInternalError)
	fs.Faults().Clear()
	if err := get(ctx); err != nil {
		t.Fatalf("after Clear: %v", err)
	}
	if n := fs.Faults().Requests(); n != 7 {
		t.Errorf("%d requests counted, want 7", n)
	}
}

// TestSESTags: tags and the configuration set are recorded on both APIs;
// a tag SES would refuse is refused.
func TestSESTags(t *testing.T) {
	s := startSES(t, SESOptions{})
	ctx := context.Background()
	v1 := ses.NewFromConfig(testConfig(), func(o *ses.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	v2 := sesv2.NewFromConfig(testConfig(), func(o *sesv2.Options) { o.BaseEndpoint = aws.String(s.URL()) })
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{{"alias", "shop_relay_example_com", true}, {"alias", "shop@relay.example.com", false}, {"bad name", "x", false}, {"alias", "", false}} {
		_, err1 := v1.SendRawEmail(ctx, &ses.SendRawEmailInput{
			Destinations: []string{"alice@example.org"}, RawMessage: &sestypes.RawMessage{Data: []byte(testMail)},
			ConfigurationSetName: aws.String("set-1"), Tags: []sestypes.MessageTag{{Name: aws.String(tc.name), Value: aws.String(tc.value)}},
		})
		_, err2 := v2.SendEmail(ctx, &sesv2.SendEmailInput{
			Destination:          &sesv2types.Destination{ToAddresses: []string{"alice@example.org"}},
			Content:              &sesv2types.EmailContent{Raw: &sesv2types.RawMessage{Data: []byte(testMail)}},
			ConfigurationSetName: aws.String("set-2"), EmailTags: []sesv2types.MessageTag{{Name: aws.String(tc.name), Value: aws.String(tc.value)}},
		})
		if (err1 == nil) != tc.ok || (err2 == nil) != tc.ok {
			t.Errorf("tag %s=%q: v1 %v, v2 %v; want ok %v", tc.name, tc.value, err1, err2, tc.ok)
		}
	}
	sent := s.Sent()
	if len(sent) != 2 {
		t.Fatalf("sent %d, want 2", len(sent))
	}
	for i, set := range []string{"set-1", "set-2"} {
		if sent[i].ConfigurationSet != set || sent[i].Tags["alias"] != "shop_relay_example_com" || len(sent[i].Tags) != 1 {
			t.Errorf("sent %d: set %q tags %v", i, sent[i].ConfigurationSet, sent[i].Tags)
		}
	}
}
