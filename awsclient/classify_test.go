package awsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	sestypes "github.com/aws/aws-sdk-go-v2/service/ses/types"
	sesv2types "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// sdkError wraps err the way the SDK does for a response with status: an
// OperationError around an awshttp.ResponseError around the API error.
func sdkError(service, op string, status int, err error) error {
	return &smithy.OperationError{
		ServiceID:     service,
		OperationName: op,
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      err,
			},
			RequestID: "req",
		},
	}
}

func apiErr(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var classifyTests = []struct {
	name      string
	service   string
	err       error
	permanent bool
	reason    failure.Reason
}{
	{"s3 NoSuchKey", "s3", sdkError("S3", "GetObject", 404, &s3types.NoSuchKey{}), true, "s3_not_found"},
	{"s3 NoSuchBucket", "s3", sdkError("S3", "GetObject", 404, &s3types.NoSuchBucket{}), true, "s3_not_found"},
	{"s3 bare 404", "s3", sdkError("S3", "GetObject", 404, errors.New("not found")), true, "s3_not_found"},
	{"s3 404 unknown code", "s3", sdkError("S3", "GetObject", 404, apiErr("Whatever")), true, "s3_not_found"},
	{"s3 AccessDenied", "s3", sdkError("S3", "GetObject", 403, apiErr("AccessDenied")), false, "s3_access_denied"},
	{"s3 bare 403", "s3", sdkError("S3", "GetObject", 403, errors.New("forbidden")), false, "s3_access_denied"},
	{"s3 clock skew", "s3", sdkError("S3", "GetObject", 403, apiErr("RequestTimeTooSkewed")), false, "s3_access_denied"},
	{"s3 SlowDown", "s3", sdkError("S3", "GetObject", 503, apiErr("SlowDown")), false, "s3_throttled"},
	{"s3 429", "s3", sdkError("S3", "GetObject", 429, errors.New("x")), false, "s3_throttled"},
	{"s3 500", "s3", sdkError("S3", "GetObject", 500, apiErr("InternalError")), false, "s3_5xx"},
	{"s3 502 bare", "s3", sdkError("S3", "GetObject", 502, errors.New("bad gateway")), false, "s3_5xx"},
	{"s3 RequestTimeout 400", "s3", sdkError("S3", "GetObject", 400, apiErr("RequestTimeout")), false, "s3_timeout"},
	{"s3 400 other", "s3", sdkError("S3", "GetObject", 400, apiErr("InvalidArgument")), true, "s3_bad_request"},
	{"s3 408", "s3", sdkError("S3", "GetObject", 408, errors.New("x")), false, "s3_timeout"},
	{"ses MessageRejected", "ses", sdkError("SES", "SendRawEmail", 400, &sestypes.MessageRejected{}), true, "ses_rejected"},
	{"sesv2 MessageRejected", "ses", sdkError("SESv2", "SendEmail", 400, &sesv2types.MessageRejected{}), true, "ses_rejected"},
	{"ses MailFrom", "ses", sdkError("SES", "SendRawEmail", 400, &sestypes.MailFromDomainNotVerifiedException{}), true, "ses_mail_from_not_verified"},
	{"ses InvalidParameterValue", "ses", sdkError("SES", "SendRawEmail", 400, apiErr("InvalidParameterValue")), true, "ses_invalid_parameter"},
	{"sesv2 BadRequest", "ses", sdkError("SESv2", "SendEmail", 400, &sesv2types.BadRequestException{}), true, "ses_invalid_parameter"},
	{"ses 400 unknown", "ses", sdkError("SES", "SendRawEmail", 400, apiErr("SomethingNew")), true, "ses_rejected"},
	{"ses Throttling 400", "ses", sdkError("SES", "SendRawEmail", 400, apiErr("Throttling")), false, "ses_throttled"},
	{"sesv2 TooManyRequests", "ses", sdkError("SESv2", "SendEmail", 429, &sesv2types.TooManyRequestsException{}), false, "ses_throttled"},
	{"sesv2 LimitExceeded", "ses", sdkError("SESv2", "SendEmail", 400, &sesv2types.LimitExceededException{}), false, "ses_throttled"},
	{"ses paused", "ses", sdkError("SES", "SendRawEmail", 400, &sestypes.AccountSendingPausedException{}), false, "ses_sending_paused"},
	{"sesv2 paused", "ses", sdkError("SESv2", "SendEmail", 400, &sesv2types.SendingPausedException{}), false, "ses_sending_paused"},
	{"ses config set missing", "ses", sdkError("SES", "SendRawEmail", 400, &sestypes.ConfigurationSetDoesNotExistException{}), false, "ses_misconfigured"},
	{"ses 404", "ses", sdkError("SES", "SendRawEmail", 404, errors.New("x")), false, "ses_misconfigured"},
	{"ses AccessDenied", "ses", sdkError("SES", "SendRawEmail", 403, apiErr("AccessDenied")), false, "ses_access_denied"},
	{"ses bad token", "ses", sdkError("SES", "SendRawEmail", 403, apiErr("InvalidClientTokenId")), false, "ses_access_denied"},
	{"ses 500", "ses", sdkError("SES", "SendRawEmail", 500, apiErr("InternalFailure")), false, "ses_5xx"},
	{"sesv2 500", "ses", sdkError("SESv2", "SendEmail", 500, &sesv2types.InternalServiceErrorException{}), false, "ses_5xx"},
	{"retries exhausted", "s3", &retry.MaxAttemptsError{Attempt: 2, Err: sdkError("S3", "GetObject", 500, apiErr("InternalError"))}, false, "s3_5xx"},
	{"deadline", "s3", fmt.Errorf("op: %w", context.DeadlineExceeded), false, "s3_timeout"},
	{"header timeout", "ses", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &url.Error{Op: "Post", URL: "u", Err: timeoutErr{}}}}, false, "ses_timeout"},
	{"read timeout", "s3", &awshttp.ResponseTimeoutError{}, false, "s3_timeout"},
	{"canceled", "s3", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &url.Error{Op: "Get", URL: "u", Err: context.Canceled}}}, false, "s3_canceled"},
	{"connection refused", "s3", &smithy.OperationError{Err: &smithyhttp.RequestSendError{Err: &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}}}, false, "s3_network"},
	{"dns", "ses", &net.DNSError{Err: "no such host", Name: "x"}, false, "ses_network"},
	{"breaker open", "s3", gobreaker.ErrOpenState, false, "breaker_open"},
	{"breaker half-open full", "s3", gobreaker.ErrTooManyRequests, false, "breaker_open"},
	{"unknown", "s3", errors.New("mystery"), false, "s3_error"},
	{"already classified", "s3", failure.Permanent("message_too_large", errors.New("big")), true, "message_too_large"},
}

func TestClassify(t *testing.T) {
	if Classify("s3", nil) != nil {
		t.Fatal("nil classified as an error")
	}
	for _, tt := range classifyTests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.service, tt.err)
			if failure.IsPermanent(got) != tt.permanent || failure.ReasonOf(got) != tt.reason {
				t.Errorf("Classify(%v) = %v (%v, %q), want permanent=%v %q", tt.err, got, failure.ClassOf(got), failure.ReasonOf(got), tt.permanent, tt.reason)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classified error does not wrap the original")
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{context.DeadlineExceeded, "timeout"},
		{&url.Error{Op: "Get", URL: "u", Err: timeoutErr{}}, "timeout"},
		{&awshttp.ResponseTimeoutError{}, "timeout"},
		{context.Canceled, "error"},
		{sdkError("S3", "GetObject", 500, apiErr("InternalError")), "error"},
	}
	for _, tt := range tests {
		if got := outcome(tt.err); got != tt.want {
			t.Errorf("outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	err := &retry.MaxAttemptsError{Attempt: 2, Err: sdkError("S3", "GetObject", 503, apiErr("SlowDown"))}
	for b.Loop() {
		Classify("s3", err)
	}
}
