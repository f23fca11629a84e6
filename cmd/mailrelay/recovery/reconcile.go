package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// Object is one S3 object as listed.
type Object struct {
	Key          string
	LastModified time.Time
	Size         int64
}

// Bucket is the part of S3 that Reconcile needs.
type Bucket interface {
	// List calls fn for every object under prefix, page by page.
	List(ctx context.Context, prefix string, fn func(Object) error) error
	// Head returns the first max bytes of the object (its header).
	Head(ctx context.Context, key string, max int64) ([]byte, error)
}

// Submitter hands one SES-shaped "Received" notification (the JSON SNS
// would carry as Message) to the relay.
type Submitter interface {
	Submit(ctx context.Context, notification []byte) error
}

// ReconcileOptions select the objects Reconcile reports.
type ReconcileOptions struct {
	Bucket   string
	Prefix   string
	Since    time.Time     // objects modified at or after
	MinAge   time.Duration // objects younger than this are in flight: left alone
	TopicARN string        // receipt.action.topicArn of built notifications
	Max      int           // at most this many found (0: DefaultReconcileMax)
	// Domains, when not empty, are the relay's domains: recipients found
	// in an object's header on any other domain are left out (a "for
	// <rcpt>" clause or To/Cc is written by whoever sent the mail, and
	// only SES's own Received is trustworthy). The relay would drop them
	// anyway (not_our_domain: its alias resolver answers only for its
	// domains); leaving them out keeps them out of the report and an
	// object with no recipient left is not submitted.
	Domains []string
	Now     func() time.Time
}

// headerBytes is how much of an object Reconcile reads for its header.
const headerBytes = 64 << 10

// Found is an object still in the bucket: the relay deletes objects it
// forwarded, so one older than MinAge was never processed (or is failing).
type Found struct {
	Object
	Recipients   []string
	Notification []byte // SES "Received" notification JSON
	Submitted    bool
	Err          error // reading or submitting failed
}

// DefaultReconcileMax is the default bound on objects found per run.
const DefaultReconcileMax = 10000

// Reconcile lists the bucket and returns the objects modified since
// o.Since and older than o.MinAge, with the envelope recipients found in
// their headers and a notification for each. With a non-nil s each is
// submitted; a failed read or submission is recorded on the Found and the
// run goes on, an error from List ends it.
func Reconcile(ctx context.Context, b Bucket, s Submitter, o ReconcileOptions) ([]Found, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Max <= 0 {
		o.Max = DefaultReconcileMax
	}
	cutoff := now().Add(-o.MinAge)
	var found []Found
	errFull := errors.New("max reached")
	err := b.List(ctx, o.Prefix, func(obj Object) error {
		if obj.LastModified.Before(o.Since) || obj.LastModified.After(cutoff) || strings.HasSuffix(obj.Key, "/") {
			return nil
		}
		if len(found) >= o.Max {
			return errFull
		}
		f := Found{Object: obj}
		head, err := b.Head(ctx, obj.Key, headerBytes)
		if err != nil {
			f.Err = fmt.Errorf("reading %s: %w", obj.Key, err)
		} else {
			f.Recipients = envelopeRecipients(head, onDomains(o.Domains))
			f.Notification = ReceivedNotification(o.Bucket, obj, f.Recipients, o.TopicARN)
			if s != nil && len(f.Recipients) > 0 {
				if err := s.Submit(ctx, f.Notification); err != nil {
					f.Err = fmt.Errorf("submitting %s: %w", obj.Key, err)
				} else {
					f.Submitted = true
				}
			}
		}
		found = append(found, f)
		return ctx.Err()
	})
	if err != nil && !errors.Is(err, errFull) {
		return found, fmt.Errorf("listing s3://%s/%s: %w", o.Bucket, o.Prefix, err)
	}
	return found, nil
}

// onDomains returns whether a recipient's domain is one of domains (every
// recipient is, when domains is empty). Domains compare case-insensitively,
// without a trailing dot.
func onDomains(domains []string) func(rcpt string) bool {
	norm := func(d string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")) }
	return func(r string) bool {
		if len(domains) == 0 {
			return true
		}
		d := norm(r[strings.LastIndexByte(r, '@')+1:])
		return slices.ContainsFunc(domains, func(x string) bool { return norm(x) == d })
	}
}

// ParseSince reads a point in time: RFC 3339, or a duration before now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("since %q: want RFC 3339 (2026-11-23T10:00:00Z) or a duration (6h)", s)
	}
	return now.Add(-d), nil
}

var forRe = regexp.MustCompile(`(?i)(?:^|[\s;)])for\s+<?([^\s<>;@]+@[^\s<>;]+?)>?\s*(?:;|$)`)

// maxReceived is how many of the topmost Received headers are searched for
// a "for <rcpt>" clause: SES adds its own on top.
const maxReceived = 3

// EnvelopeRecipients returns the envelope recipients of a raw mail as SES
// stored it: the "for <rcpt>" clause of the topmost Received header that has
// one (SES names the recipient there; the envelope is not otherwise in the
// object), else the To and Cc addresses. Lower-cased, deduplicated, in order.
func EnvelopeRecipients(raw []byte) []string {
	return envelopeRecipients(raw, func(string) bool { return true })
}

// envelopeRecipients is EnvelopeRecipients counting only the recipients
// keep accepts: a Received header whose "for" names none of them is passed
// over like one without "for".
func envelopeRecipients(raw []byte, keep func(rcpt string) bool) []string {
	var out []string
	add := func(a string) {
		a = strings.ToLower(strings.TrimSpace(a))
		if a != "" && !slices.Contains(out, a) && keep(a) {
			out = append(out, a)
		}
	}
	fields := headerFields(raw)
	n := 0
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Received") {
			continue
		}
		if n++; n > maxReceived {
			break
		}
		for _, m := range forRe.FindAllStringSubmatch(f.value, -1) {
			add(m[1])
		}
		if len(out) > 0 {
			return out
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, "To") || strings.EqualFold(f.name, "Cc") {
			l, err := mail.ParseAddressList(f.value)
			if err != nil {
				continue
			}
			for _, a := range l {
				add(a.Address)
			}
		}
	}
	return out
}

type field struct{ name, value string }

// headerFields returns the header fields up to the first empty line, folded
// lines joined; lines without a colon are skipped.
func headerFields(raw []byte) []field {
	var out []field
	for i := 0; len(raw) > 0 && i < 100000; i++ {
		line := raw
		if j := bytes.IndexByte(raw, '\n'); j >= 0 {
			line, raw = raw[:j], raw[j+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].value += " " + strings.TrimSpace(string(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, field{strings.TrimSpace(string(name)), strings.TrimSpace(string(value))})
	}
	return out
}

// ReceivedNotification builds the SES "Received" notification (S3 action)
// for an object, as SES would have published it (sesnotify.Received); the
// SES message id is the object key's last element (SES names objects so).
//
// The verdicts SES gave are not known after the fact. Rather than invent a
// PASS, every one (spam, virus, SPF, DKIM, DMARC) is PROCESSING_FAILED,
// SES's own word for a check that could not be done: the relay's policy
// then decides (with Policy.HoldUnverified it dead-letters the mail,
// reason unverified, for an operator to look at; by default it forwards it
// as it would mail whose verdicts do not say FAIL). mail.source (the
// envelope sender) is left empty, as unknown, and mail.headers unlisted:
// the relay then judges the sender by the Return-Path SES wrote on top of
// the stored mail (a bounce's "<>" is dropped, reason empty_sender).
func ReceivedNotification(bucket string, obj Object, recipients []string, topicARN string) []byte {
	id := obj.Key[strings.LastIndexByte(obj.Key, '/')+1:]
	n := sesnotify.Received(id, obj.LastModified, recipients, sesnotify.S3Action(topicARN, bucket, obj.Key))
	unknown := sesnotify.Verdict{Status: sesnotify.StatusProcessingFail}
	r := n.Receipt
	r.SpamVerdict, r.VirusVerdict, r.SPFVerdict, r.DKIMVerdict, r.DMARCVerdict = unknown, unknown, unknown, unknown, unknown
	return n.JSON()
}

// HTTPSubmitter POSTs notifications to the relay's admin endpoint
// POST /reconcile (body: the notification JSON; 200 or 202 when spooled or
// already known), served by the relay's admin API (package admin).
type HTTPSubmitter struct {
	URL    string
	Client *http.Client // nil: a client with DefaultHTTPTimeout
}

// Submit posts one notification; any status but 200/202 is an error.
func (s *HTTPSubmitter) Submit(ctx context.Context, notification []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(notification))
	if err != nil {
		return fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := do(s.Client, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("post %s: status %d: %s", s.URL, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}
