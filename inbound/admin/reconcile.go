package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// SNSRedrivePath is where the dead-letter-queue redrive hands SNS messages
// over.
const SNSRedrivePath = "/sns/redrive"

// ReconcileRequest names a mail object SES stored that the relay never
// heard of. It is a reference only: the relay builds the notification
// itself, with every verdict PROCESSING_FAILED, and fetches the mail from
// S3 like any other.
type ReconcileRequest struct {
	Bucket     string   `json:"bucket"`
	Key        string   `json:"key"`
	Recipients []string `json:"recipients"`
	// Timestamp is when SES received the mail (the object's LastModified;
	// default now).
	Timestamp *time.Time `json:"timestamp,omitempty"`
	// TopicARN, if set, must be one of the relay's topics (default its
	// first).
	TopicARN string `json:"topic_arn,omitempty"`
}

// ReconcileResponse answers POST /reconcile.
type ReconcileResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// referenceHint ends the refusals of malformed reconcile requests.
const referenceHint = `(POST /reconcile takes references only: {"bucket","key","recipients"[,"timestamp","topic_arn"]}; no content, no notification)`

// Limits of a reconcile request.
const (
	maxKeyBytes   = 1024 // S3's own limit
	maxRecipients = 100
)

// reconcile spools a Received notification for the referenced object
// under the id reconcile:<bucket>/<key>, so handing the same object over
// twice is harmless. 202 spooled or known; 400 malformed (inline content or
// a whole notification among them: unknown fields); 403 a bucket, topic or
// recipient domain that is not the relay's; 503 spool full.
func (a *api) reconcile(w http.ResponseWriter, r *http.Request) {
	var req ReconcileRequest
	if !decodeJSON(w, r, &req, referenceHint) {
		return
	}
	if err := checkReference(req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error()+" "+referenceHint)
		return
	}
	if len(a.cfg.Buckets) == 0 {
		writeError(w, http.StatusForbidden, "reconcile is off: no S3 bucket configured (set --s3-buckets / RELAY_S3_BUCKETS to the buckets SES stores mail in)")
		return
	}
	if !slices.Contains(a.cfg.Buckets, req.Bucket) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("bucket %.100q is not one of the relay's (--s3-buckets / RELAY_S3_BUCKETS)", req.Bucket))
		return
	}
	rcpts := make([]string, 0, len(req.Recipients))
	domains := a.cfg.Domains()
	for _, rc := range req.Recipients {
		rc = strings.ToLower(rc)
		if !onDomains(rc, domains) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("recipient %.100q is not on the relay's domains %v", rc, domains))
			return
		}
		if !slices.Contains(rcpts, rc) {
			rcpts = append(rcpts, rc)
		}
	}
	topic := req.TopicARN
	switch {
	case topic != "" && !slices.Contains(a.cfg.TopicARNs, topic):
		writeError(w, http.StatusForbidden, fmt.Sprintf("topic %.100q is not one of the relay's (--sns-topic-arns)", topic))
		return
	case topic == "" && len(a.cfg.TopicARNs) > 0:
		topic = a.cfg.TopicARNs[0]
	}
	now := a.now().UTC()
	at := now
	if req.Timestamp != nil && !req.Timestamp.IsZero() {
		at = *req.Timestamp
	}
	sesID := req.Key[strings.LastIndexByte(req.Key, '/')+1:]
	n := sesnotify.Received(sesID, at, rcpts, sesnotify.S3Action(topic, req.Bucket, req.Key)).Unverified()
	id := "reconcile:" + req.Bucket + "/" + req.Key
	dup, err := a.cfg.Queue.Put(r.Context(), spool.Entry{ID: id, Kind: sesnotify.TypeReceived, TopicARN: topic, Payload: n.JSON(), EnqueuedAt: now})
	switch {
	case errors.Is(err, spool.ErrInvalidID):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		w.Header().Set("Retry-After", a.retryAfter)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	a.log.Info("reconciled object handed over", "id", id, "recipients", len(rcpts), "duplicate", dup)
	writeJSON(w, http.StatusAccepted, ReconcileResponse{ID: id, Duplicate: dup})
}

// checkReference checks the shape of a reconcile request.
func checkReference(req ReconcileRequest) error {
	switch {
	case req.Bucket == "" || req.Key == "":
		return errors.New("bucket and key are required")
	case len(req.Bucket) > 63 || strings.ContainsFunc(req.Bucket, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	}):
		return fmt.Errorf("bucket %.100q is not an S3 bucket name", req.Bucket)
	case len(req.Key) > maxKeyBytes || !utf8.ValidString(req.Key) || strings.ContainsFunc(req.Key, unicode.IsControl) || strings.HasSuffix(req.Key, "/"):
		return fmt.Errorf("key %.100q is not an S3 object key of a mail (at most %d bytes of UTF-8, no control characters, not a folder)", req.Key, maxKeyBytes)
	case len(req.Recipients) == 0:
		return errors.New("recipients are required")
	case len(req.Recipients) > maxRecipients:
		return fmt.Errorf("%d recipients, at most %d", len(req.Recipients), maxRecipients)
	}
	for _, rc := range req.Recipients {
		a, err := mail.ParseAddress(rc)
		if err != nil || a.Name != "" || a.Address != rc {
			return fmt.Errorf("recipient %.100q is not a bare address (local@domain)", rc)
		}
	}
	return nil
}

// onDomains reports whether rcpt's domain is one of domains
// (case-insensitive, without a trailing dot).
func onDomains(rcpt string, domains []string) bool {
	norm := func(d string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")) }
	d := norm(rcpt[strings.LastIndexByte(rcpt, '@')+1:])
	return d != "" && slices.ContainsFunc(domains, func(x string) bool { return norm(x) == d })
}

// SNSRedriveResponse answers a POST /sns/redrive the relay accepted.
type SNSRedriveResponse struct {
	Result string `json:"result"` // stored, duplicate, stored_unrecognised
}

// redriveSNS hands an SNS message from the subscription's dead-letter queue
// (the JSON SNS had POSTed, unchanged) to the SNS intake: verified and
// persisted as on POST /sns before the 200, with the intake's status; a
// refusal carries the intake's reason.
func (a *api) redriveSNS(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	code, reason, err := a.cfg.SNS.Redeliver(r.Context(), body)
	if code == http.StatusOK {
		writeJSON(w, code, SNSRedriveResponse{Result: reason})
		return
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	msg := reason
	if err != nil {
		msg = clip(err.Error())
	}
	writeJSON(w, code, ErrorResponse{Error: msg, Reason: reason})
}
