package awsclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// Error codes, grouped by what they mean for the relay. Codes are matched
// exactly as the services send them (S3 REST-XML, SES query XML, SESv2
// X-Amzn-ErrorType).
var (
	throttleCodes = codeSet(
		"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
		"TooManyRequestsException", "SlowDown", "RequestLimitExceeded", "BandwidthLimitExceeded",
		"RequestThrottled", "LimitExceededException", "PriorRequestNotComplete",
	)
	// Credentials, permissions and clock skew: a deployment mistake, fixed
	// by an operator; every mail would hit it, so none may be dead-lettered.
	authCodes = codeSet(
		"AccessDenied", "AccessDeniedException", "InvalidAccessKeyId", "SignatureDoesNotMatch",
		"ExpiredToken", "ExpiredTokenException", "InvalidToken", "InvalidClientTokenId",
		"UnrecognizedClientException", "MissingAuthenticationToken", "IncompleteSignature",
		"RequestExpired", "RequestTimeTooSkewed", "AllAccessDisabled", "AccountProblem",
	)
	s3NotFoundCodes = codeSet("NoSuchKey", "NoSuchBucket", "NotFound")
	// SES refuses this mail (content, addresses, size): retrying the same
	// bytes cannot help.
	sesRejectedCodes = codeSet("MessageRejected")
	sesParamCodes    = codeSet("InvalidParameterValue", "BadRequestException", "InvalidParameterCombination")
	sesMailFromCodes = codeSet("MailFromDomainNotVerifiedException", "MailFromDomainNotVerified")
	// Sending paused or account suspended: an operator matter, transient.
	sesPausedCodes = codeSet(
		"AccountSendingPausedException", "ConfigurationSetSendingPausedException",
		"SendingPausedException", "AccountSuspendedException",
	)
	// A named configuration set or resource is missing: misconfiguration.
	sesConfigCodes = codeSet("ConfigurationSetDoesNotExist", "ConfigurationSetDoesNotExistException", "NotFoundException")
)

func codeSet(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// Classify wraps err from a call to service ("s3" or "ses") as a
// failure.Permanent or failure.Transient error with a short reason. It is
// the one place that decides what an AWS error means for a mail:
//
//   - S3 NoSuchKey/NoSuchBucket/404: permanent "s3_not_found" (the object is
//     gone; waiting will not bring it back).
//   - SES MessageRejected: permanent "ses_rejected"; InvalidParameterValue
//     and SESv2 BadRequestException: "ses_invalid_parameter";
//     MailFromDomainNotVerified: "ses_mail_from_not_verified"; any other 4xx
//     without a known code: permanent "<service>_bad_request".
//   - Throttling (Throttling, SlowDown, TooManyRequestsException, 429, ...):
//     transient "<service>_throttled". SES sends Throttling with status 400,
//     so codes are checked before statuses.
//   - 403/AccessDenied and other credential or clock errors: transient
//     "<service>_access_denied". An IAM or key mistake affects every mail;
//     dead-lettering them all would turn a config fix into a mass redrive.
//     The breaker opens instead, and the spool retries once it is fixed.
//   - SES sending paused / account suspended: transient "ses_sending_paused";
//     a missing configuration set: transient "ses_misconfigured".
//   - 5xx: transient "<service>_5xx"; deadlines and network timeouts:
//     transient "<service>_timeout"; other network errors: transient
//     "<service>_network"; the caller's cancellation: transient
//     "<service>_canceled"; an open breaker: transient "breaker_open".
//   - Anything else: transient "<service>_error" (when in doubt, keep the
//     mail and try again).
//
// An error that is already classified is returned unchanged.
func Classify(service string, err error) error {
	if err == nil {
		return nil
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return err
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return failure.Transient(failure.ReasonBreakerOpen, err)
	}
	r := reasonsOf(service)
	if errors.Is(err, context.Canceled) {
		return failure.Transient(r.canceled, err)
	}

	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if reason, permanent, ok := classifyCode(service, apiErr.ErrorCode()); ok {
			if permanent {
				return failure.Permanent(reason, err)
			}
			return failure.Transient(reason, err)
		}
	}

	if isTimeout(err) {
		return failure.Transient(r.timeout, err)
	}

	var se interface{ HTTPStatusCode() int }
	if errors.As(err, &se) {
		switch status := se.HTTPStatusCode(); {
		case status == http.StatusNotFound && service == ServiceS3:
			return failure.Permanent(failure.ReasonS3NotFound, err)
		case status == http.StatusNotFound:
			return failure.Transient(r.misconfigured, err)
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return failure.Transient(r.accessDenied, err)
		case status == http.StatusTooManyRequests:
			return failure.Transient(r.throttled, err)
		case status == http.StatusRequestTimeout:
			return failure.Transient(r.timeout, err)
		case status >= 500:
			return failure.Transient(r.fiveXX, err)
		case status >= 400:
			if service == ServiceSES {
				return failure.Permanent(failure.ReasonSESRejected, err)
			}
			return failure.Permanent(r.badRequest, err)
		}
	}

	var (
		sendErr *smithyhttp.RequestSendError
		opErr   *net.OpError
		urlErr  *url.Error
		dnsErr  *net.DNSError
	)
	if errors.As(err, &sendErr) || errors.As(err, &opErr) || errors.As(err, &urlErr) || errors.As(err, &dnsErr) {
		return failure.Transient(r.network, err)
	}
	return failure.Transient(r.other, err)
}

// Services of Classify, the service label of the metrics.
const (
	ServiceS3  = "s3"
	ServiceSES = "ses"
)

// serviceReasons are the reasons every service shares ("<service>_...").
type serviceReasons struct {
	canceled, timeout, throttled, accessDenied, misconfigured, fiveXX, badRequest, network, other failure.Reason
}

var (
	s3Reasons = serviceReasons{
		canceled: failure.ReasonS3Canceled, timeout: failure.ReasonS3Timeout, throttled: failure.ReasonS3Throttled,
		accessDenied: failure.ReasonS3AccessDenied, misconfigured: failure.ReasonS3Misconfigured, fiveXX: failure.ReasonS35xx,
		badRequest: failure.ReasonS3BadRequest, network: failure.ReasonS3Network, other: failure.ReasonS3Error,
	}
	sesReasons = serviceReasons{
		canceled: failure.ReasonSESCanceled, timeout: failure.ReasonSESTimeout, throttled: failure.ReasonSESThrottled,
		accessDenied: failure.ReasonSESAccessDenied, misconfigured: failure.ReasonSESMisconfigured, fiveXX: failure.ReasonSES5xx,
		badRequest: failure.ReasonSESBadRequest, network: failure.ReasonSESNetwork, other: failure.ReasonSESError,
	}
)

// reasonsOf returns the reasons of service (ServiceS3 or ServiceSES; any
// other is a programming error and gets the S3 set's shape under its own
// name, so a new service shows up in metrics rather than hiding).
func reasonsOf(service string) serviceReasons {
	switch service {
	case ServiceS3:
		return s3Reasons
	case ServiceSES:
		return sesReasons
	}
	f := func(s string) failure.Reason { return failure.Reason(service + "_" + s) }
	return serviceReasons{f("canceled"), f("timeout"), f("throttled"), f("access_denied"), f("misconfigured"), f("5xx"), f("bad_request"), f("network"), f("error")}
}

// classifyCode maps an API error code; ok is false for codes it does not
// know, which are then judged by HTTP status.
func classifyCode(service, code string) (reason failure.Reason, permanent, ok bool) {
	r := reasonsOf(service)
	switch {
	case throttleCodes[code]:
		return r.throttled, false, true
	case authCodes[code]:
		return r.accessDenied, false, true
	case code == "RequestTimeout" || code == "RequestTimeoutException":
		return r.timeout, false, true
	case code == "InternalError" || code == "InternalFailure" || code == "ServiceUnavailable" || code == "InternalServiceErrorException":
		return r.fiveXX, false, true
	}
	switch service {
	case ServiceS3:
		if s3NotFoundCodes[code] {
			return failure.ReasonS3NotFound, true, true
		}
	case ServiceSES:
		switch {
		case sesRejectedCodes[code]:
			return failure.ReasonSESRejected, true, true
		case sesParamCodes[code]:
			return failure.ReasonSESInvalidParameter, true, true
		case sesMailFromCodes[code]:
			return failure.ReasonSESMailFromNotVerified, true, true
		case sesPausedCodes[code]:
			return failure.ReasonSESSendingPaused, false, true
		case sesConfigCodes[code]:
			return r.misconfigured, false, true
		}
	}
	return "", false, false
}
