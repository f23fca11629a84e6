package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
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

// Reference names a mail object for the relay: it builds the notification
// itself (every verdict PROCESSING_FAILED, as they are not known after the
// fact) and fetches the mail from S3.
type Reference struct {
	Bucket     string
	Key        string
	Recipients []string
	Timestamp  time.Time // the object's LastModified
	TopicARN   string    // "" for the relay's own
}

// Submitter hands one object over to the relay (the admin API's
// POST /reconcile).
type Submitter interface {
	Submit(ctx context.Context, ref Reference) error
}

// ReconcileOptions select the objects Reconcile reports.
type ReconcileOptions struct {
	Bucket   string
	Prefix   string
	Since    time.Time     // objects modified at or after
	MinAge   time.Duration // objects younger than this are in flight: left alone
	TopicARN string        // topic named in references ("": the relay's first)
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
	Recipients []string
	Submitted  bool
	Err        error // reading or submitting failed
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
			if s != nil && len(f.Recipients) > 0 {
				ref := Reference{Bucket: o.Bucket, Key: obj.Key, Recipients: f.Recipients, Timestamp: obj.LastModified, TopicARN: o.TopicARN}
				if err := s.Submit(ctx, ref); err != nil {
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
