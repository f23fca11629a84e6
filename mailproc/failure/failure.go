// Package failure classifies errors as transient (retry later) or permanent
// (retrying cannot help: dead-letter or drop), each with a Reason. It is the
// one place where that decision is made and where every reason is named:
// the edges (awsclient, parsers) wrap their errors with a class and a Reason
// constant, and the pipeline asks this package.
package failure

import (
	"context"
	"errors"
	"fmt"
)

// Class is how an error should be handled.
type Class int

const (
	// ClassTransient: try again later (timeouts, throttling, 5xx, breaker open).
	ClassTransient Class = iota
	// ClassPermanent: the same input will always fail (malformed mail, 4xx).
	ClassPermanent
)

func (c Class) String() string {
	if c == ClassPermanent {
		return "permanent"
	}
	return "transient"
}

// Reason is a short machine-readable cause: the reason label of
// mailrelay_messages_total, the first word of a retried or dead-lettered
// entry's stored reason (operators and alerts key on it) and the "reason"
// of log lines. Every value the relay emits is a constant below; the values
// are part of the operator contract and stored in the spool's dead letters,
// so they never change spelling.
//
// The label values, by where they arise:
//
//	pipeline (mailproc):     malformed_notification, unknown_notification,
//	                         feedback_bounce, feedback_complaint,
//	                         unknown_alias, no_content, message_too_large,
//	                         alias_lookup, spool_write, shutdown, panic,
//	                         breaker_open, retries_exhausted,
//	                         unverified, invalid_recipient
//	drops (mailproc):        spam, virus, dmarc_reject, dmarc_quarantine,
//	                         spf, dkim, not_our_domain,
//	                         unknown_alias, no_recipient, invalid_recipient,
//	                         empty_sender, auto_submitted,
//	                         delivery_report, loop, alias_disabled,
//	                         promotional_blocked, reply_not_allowed,
//	                         reply_invalid, reply_expired;
//	                         forwarded: ok, reply, or the verdict a tagged
//	                         mail was tagged for (spam, virus, ...)
//	mail (rewrite):          malformed_mail, message_too_large,
//	                         invalid_recipient
//	AWS calls (awsclient):   breaker_open, s3_not_found, ses_rejected,
//	                         ses_invalid_parameter,
//	                         ses_mail_from_not_verified, ses_sending_paused,
//	                         and per service (s3_, ses_): _canceled,
//	                         _timeout, _throttled, _access_denied,
//	                         _misconfigured, _5xx, _bad_request, _network,
//	                         _error
//	unclassified errors:     timeout, canceled, error
type Reason string

// Reasons of the pipeline (mailproc) and of the mail parsers.
const (
	ReasonMalformedNotification Reason = "malformed_notification"
	ReasonUnknownNotification   Reason = "unknown_notification"
	ReasonFeedbackBounce        Reason = "feedback_bounce"
	ReasonFeedbackComplaint     Reason = "feedback_complaint"
	ReasonUnknownAlias          Reason = "unknown_alias"
	ReasonNoContent             Reason = "no_content"
	ReasonMalformedMail         Reason = "malformed_mail"
	ReasonMessageTooLarge       Reason = "message_too_large"
	ReasonAliasLookup           Reason = "alias_lookup"
	ReasonSpoolWrite            Reason = "spool_write"
	// ReasonDatabase: the shared PostgreSQL state failed a call (statedb).
	ReasonDatabase Reason = "database"
	ReasonShutdown Reason = "shutdown"
	ReasonPanic    Reason = "panic"
	// ReasonBreakerOpen: a dependency's circuit breaker is open (the call
	// was not made, or the mail was postponed without trying).
	ReasonBreakerOpen Reason = "breaker_open"
	// ReasonRetriesExhausted: a transient failure lasted past the retry
	// age; prefixed to the last reason in the dead letter.
	ReasonRetriesExhausted Reason = "retries_exhausted"
	// ReasonUnverified: the receipt says a check the policy relies on
	// (spam, virus) could not be done (PROCESSING_FAILED, what reconcile
	// sets) and the policy holds such mail (Policy.HoldUnverified):
	// dead-lettered for an operator, the object kept.
	ReasonUnverified Reason = "unverified"
	// ReasonInvalidRecipient: a recipient or destination is not a valid
	// address (catch-all hit on a local part such as "a b", a destination
	// SES would refuse). Permanent: a retry cannot make it valid. A
	// recipient is dropped; a mail with no other is dropped, or
	// dead-lettered under Policy.DeadLetterUnknown.
	ReasonInvalidRecipient Reason = "invalid_recipient"
)

// Reasons of mail finished without failure: the drops, and forwarded.
const (
	ReasonSpam        Reason = "spam"
	ReasonVirus       Reason = "virus"
	ReasonDMARCReject Reason = "dmarc_reject"
	// ReasonDMARCQuarantine: DMARC failed and the sender's policy is
	// quarantine.
	ReasonDMARCQuarantine Reason = "dmarc_quarantine"
	// ReasonSPF, ReasonDKIM: the SPF or DKIM verdict is FAIL.
	ReasonSPF  Reason = "spf"
	ReasonDKIM Reason = "dkim"
	// ReasonReply: forwarded, a reply through a reply address.
	ReasonReply Reason = "reply"
	// ReasonReplyNotAllowed: mail to a reply address from an envelope
	// sender that is not a destination of its alias (or the alias is gone).
	ReasonReplyNotAllowed Reason = "reply_not_allowed"
	// ReasonReplyInvalid: mail to an address shaped like a reply address
	// whose tag does not verify (forged or altered) or whose replies are
	// off (no reply key).
	ReasonReplyInvalid Reason = "reply_invalid"
	// ReasonReplyExpired: a reply address older than the maximum age.
	ReasonReplyExpired Reason = "reply_expired"
	ReasonNotOurDomain Reason = "not_our_domain"
	ReasonNoRecipient  Reason = "no_recipient"
	ReasonOK           Reason = "ok"

	// Mail that must not be forwarded as ordinary mail, lest it loop
	// (a forwarded copy bounces, SES mails the bounce to the alias, the
	// relay forwards it to the destination that bounced, ...):
	//
	// ReasonEmptySender: the envelope sender is empty (MAIL FROM:<>), as
	// for every bounce and auto-reply (RFC 5321 4.5.5, RFC 3834).
	ReasonEmptySender Reason = "empty_sender"
	// ReasonAutoSubmitted: Auto-Submitted other than "no" (RFC 3834).
	ReasonAutoSubmitted Reason = "auto_submitted"
	// ReasonDeliveryReport: a delivery status notification
	// (multipart/report; report-type=delivery-status, or
	// message/delivery-status; RFC 3464 and their RFC 6533 "global" forms).
	ReasonDeliveryReport Reason = "delivery_report"
	// ReasonAliasDisabled: the recipient is a managed alias in state
	// disabled: nothing is forwarded.
	ReasonAliasDisabled Reason = "alias_disabled"
	// ReasonPromotionalBlocked: the recipient is a managed alias in state
	// block_promotional and the mail is promotional (a List-Id or
	// List-Unsubscribe header, or Precedence bulk, list or junk).
	ReasonPromotionalBlocked Reason = "promotional_blocked"

	// ReasonLoop: the mail carries the relay's own loop marker
	// (X-Mailrelay-Loop): it was forwarded by the relay before.
	ReasonLoop Reason = "loop"
)

// Reasons of the sending pace and of SES feedback (mailproc/pace,
// mailproc/feedback).
const (
	// ReasonSESDailyQuota: the account's 24-hour quota is nearly used; the
	// mail waits (transient).
	ReasonSESDailyQuota Reason = "ses_daily_quota"
	// ReasonDestinationPaused: a destination is paused after a bounce; the
	// mail is dead-lettered, to be redriven.
	ReasonDestinationPaused Reason = "destination_paused"
	// ReasonDailyCap: a destination got its daily cap of mail; the mail is
	// dead-lettered, to be redriven the next day.
	ReasonDailyCap Reason = "daily_cap"
	// (ReasonAliasDisabled also covers an alias disabled after complaints.)
	// ReasonAliasComplained: mail to an alias with a recent complaint that
	// SES did not mark PASS for spam is dropped.
	ReasonAliasComplained Reason = "alias_complained"
	// ReasonFeedbackState: recording or reading the feedback state failed
	// (transient).
	ReasonFeedbackState Reason = "feedback_state"
)

// Reasons of AWS calls (awsclient.Classify). The per-service ones are
// listed for both services the relay calls.
const (
	ReasonS3NotFound             Reason = "s3_not_found"
	ReasonSESRejected            Reason = "ses_rejected"
	ReasonSESInvalidParameter    Reason = "ses_invalid_parameter"
	ReasonSESMailFromNotVerified Reason = "ses_mail_from_not_verified"
	ReasonSESSendingPaused       Reason = "ses_sending_paused"

	ReasonS3Canceled       Reason = "s3_canceled"
	ReasonS3Timeout        Reason = "s3_timeout"
	ReasonS3Throttled      Reason = "s3_throttled"
	ReasonS3AccessDenied   Reason = "s3_access_denied"
	ReasonS3Misconfigured  Reason = "s3_misconfigured"
	ReasonS35xx            Reason = "s3_5xx"
	ReasonS3BadRequest     Reason = "s3_bad_request"
	ReasonS3Network        Reason = "s3_network"
	ReasonS3Error          Reason = "s3_error"
	ReasonSESCanceled      Reason = "ses_canceled"
	ReasonSESTimeout       Reason = "ses_timeout"
	ReasonSESThrottled     Reason = "ses_throttled"
	ReasonSESAccessDenied  Reason = "ses_access_denied"
	ReasonSESMisconfigured Reason = "ses_misconfigured"
	ReasonSES5xx           Reason = "ses_5xx"
	ReasonSESBadRequest    Reason = "ses_bad_request"
	ReasonSESNetwork       Reason = "ses_network"
	ReasonSESError         Reason = "ses_error"
)

// Reasons of errors nobody classified (see ReasonOf).
const (
	ReasonTimeout  Reason = "timeout"
	ReasonCanceled Reason = "canceled"
	ReasonError    Reason = "error"
)

// Error carries a class and a Reason.
type Error struct {
	Class  Class
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure with reason.
func Permanent(reason Reason, err error) error {
	return &Error{Class: ClassPermanent, Reason: reason, Err: err}
}

// Transient wraps err as a transient failure with reason.
func Transient(reason Reason, err error) error {
	return &Error{Class: ClassTransient, Reason: reason, Err: err}
}

// Permanentf is Permanent with a formatted error.
func Permanentf(reason Reason, format string, args ...any) error {
	return Permanent(reason, fmt.Errorf(format, args...))
}

// ClassOf reports the class of err. Unclassified errors are transient: when
// in doubt we keep the message and try again rather than lose it.
func ClassOf(err error) Class {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Class
	}
	return ClassTransient
}

// IsPermanent reports whether err is classified permanent.
func IsPermanent(err error) bool { return err != nil && ClassOf(err) == ClassPermanent }

// ReasonOf returns the reason of the outermost classified error, or a generic
// one: ReasonTimeout for deadline errors, ReasonCanceled, else ReasonError.
func ReasonOf(err error) Reason {
	var fe *Error
	if errors.As(err, &fe) && fe.Reason != "" {
		return fe.Reason
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	}
	return ReasonError
}
