package recovery

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var recipientTests = []struct {
	name string
	raw  string
	want []string
}{
	{"ses received for", "Return-Path: <b@example.net>\r\nReceived: from mx.example.net (mx.example.net [192.0.2.1])\r\n by inbound-smtp.us-east-1.amazonaws.com with SMTP id abc\r\n for Shop@relay.example.com;\r\n Mon, 23 Nov 2026 10:00:00 +0000 (UTC)\r\nTo: other@relay.example.com\r\n\r\nbody\r\n",
		[]string{"shop@relay.example.com"}},
	{"angle brackets", "Received: by mx with SMTP for <a+tag@relay.example.com>; Mon, 23 Nov 2026 10:00:00 +0000\nTo: x@y.z\n\n", []string{"a+tag@relay.example.com"}},
	{"topmost received with for wins", "Received: from a by b; Mon, 23 Nov 2026\r\nReceived: from c by d for <first@relay.example.com>; Mon\r\nReceived: from e by f for <older@relay.example.com>; Mon\r\n\r\n",
		[]string{"first@relay.example.com"}},
	{"only the top three received", "Received: x; d\nReceived: x; d\nReceived: x; d\nReceived: by y for <deep@relay.example.com>; d\nTo: to@relay.example.com\n\n", []string{"to@relay.example.com"}},
	{"fallback to and cc", "From: b@example.net\r\nTo: \"Shop\" <Shop@relay.example.com>, x@relay.example.com\r\nCc: x@relay.example.com, y@relay.example.com\r\n\r\nbody",
		[]string{"shop@relay.example.com", "x@relay.example.com", "y@relay.example.com"}},
	{"for in the body is ignored", "To: a@relay.example.com\n\nReceived: by x for <b@relay.example.com>;\n", []string{"a@relay.example.com"}},
	{"word formed", "Received: from platform for <p@relay.example.com> ; d\n\n", []string{"p@relay.example.com"}},
	{"bad to", "To: not an address\n\n", nil},
	{"empty", "", nil},
}

func TestEnvelopeRecipients(t *testing.T) {
	for _, tc := range recipientTests {
		t.Run(tc.name, func(t *testing.T) {
			if got := EnvelopeRecipients([]byte(tc.raw)); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzEnvelopeRecipients(f *testing.F) {
	for _, tc := range recipientTests {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, a := range EnvelopeRecipients(raw) {
			if a == "" || !strings.Contains(a, "@") || a != strings.ToLower(a) {
				t.Fatalf("bad recipient %q", a)
			}
		}
	})
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"6h", now.Add(-6 * time.Hour), false},
		{"2026-11-23T10:00:00Z", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	} {
		got, err := ParseSince(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("%q: %v %v, want %v err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

type fakeBucket struct {
	objs    map[string]string
	mod     map[string]time.Time
	listErr error
	headErr map[string]error
}

func (b *fakeBucket) List(ctx context.Context, prefix string, fn func(Object) error) error {
	keys := make([]string, 0, len(b.objs))
	for k := range b.objs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if err := fn(Object{Key: k, LastModified: b.mod[k], Size: int64(len(b.objs[k]))}); err != nil {
			return err
		}
	}
	return b.listErr
}

func (b *fakeBucket) Head(ctx context.Context, key string, max int64) ([]byte, error) {
	if err := b.headErr[key]; err != nil {
		return nil, err
	}
	s := b.objs[key]
	return []byte(s[:min(int64(len(s)), max)]), nil
}

type fakeSubmitter struct {
	got  []Reference
	fail bool
}

func (s *fakeSubmitter) Submit(ctx context.Context, ref Reference) error {
	if s.fail {
		return errors.New("503")
	}
	s.got = append(s.got, ref)
	return nil
}

func TestReconcile(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	mailTo := func(a string) string { return "Received: by inbound-smtp for " + a + "; d\r\n\r\nbody" }
	b := &fakeBucket{
		objs: map[string]string{
			"inbound/old":      mailTo("old@relay.example.com"),  // before --since
			"inbound/stuck":    mailTo("shop@relay.example.com"), // what we look for
			"inbound/stuck2":   "To: x@relay.example.com\r\n\r\n",
			"inbound/inflight": mailTo("new@relay.example.com"), // younger than MinAge
			"inbound/unread":   "",
			"other/stuck":      mailTo("other@relay.example.com"), // outside the prefix
			"inbound/norcpt":   "Subject: none\r\n\r\n",
		},
		mod: map[string]time.Time{
			"inbound/old": now.Add(-48 * time.Hour), "inbound/stuck": now.Add(-time.Hour), "inbound/stuck2": now.Add(-2 * time.Hour),
			"inbound/inflight": now.Add(-time.Minute), "inbound/unread": now.Add(-time.Hour), "other/stuck": now.Add(-time.Hour),
			"inbound/norcpt": now.Add(-time.Hour),
		},
		headErr: map[string]error{"inbound/unread": errors.New("AccessDenied")},
	}
	opts := ReconcileOptions{Bucket: "b", Prefix: "inbound/", Since: now.Add(-6 * time.Hour), MinAge: 15 * time.Minute, TopicARN: "arn:t", Now: func() time.Time { return now }}
	sub := &fakeSubmitter{}
	found, err := Reconcile(context.Background(), b, sub, opts)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range found {
		keys = append(keys, f.Key)
	}
	if want := []string{"inbound/norcpt", "inbound/stuck", "inbound/stuck2", "inbound/unread"}; !slices.Equal(keys, want) {
		t.Fatalf("found %q, want %q", keys, want)
	}
	if f := found[3]; f.Err == nil || f.Submitted {
		t.Errorf("unreadable object: %+v", f)
	}
	if f := found[0]; f.Err != nil || f.Submitted || len(f.Recipients) != 0 {
		t.Errorf("object without recipients must be reported, not submitted: %+v", f)
	}
	if len(sub.got) != 2 || !found[1].Submitted || !found[2].Submitted {
		t.Fatalf("submitted %d", len(sub.got))
	}
	// What is submitted is a reference: bucket, key, recipients, time and
	// topic; the relay builds the notification (admin tests).
	want := Reference{Bucket: "b", Key: "inbound/stuck", Recipients: []string{"shop@relay.example.com"}, Timestamp: now.Add(-time.Hour), TopicARN: "arn:t"}
	if got := sub.got[0]; got.Bucket != want.Bucket || got.Key != want.Key || !slices.Equal(got.Recipients, want.Recipients) ||
		!got.Timestamp.Equal(want.Timestamp) || got.TopicARN != want.TopicARN {
		t.Errorf("reference %+v, want %+v", got, want)
	}

	// Without a submitter it only reports; a failing submitter is recorded.
	found, err = Reconcile(context.Background(), b, nil, opts)
	if err != nil || len(found) != 4 || found[1].Submitted || len(found[1].Recipients) == 0 {
		t.Fatalf("report only: %v %+v", err, found)
	}
	found, _ = Reconcile(context.Background(), b, &fakeSubmitter{fail: true}, opts)
	if found[1].Err == nil || found[1].Submitted {
		t.Errorf("failed submit: %+v", found[1])
	}
	opts.Max = 1
	if found, err = Reconcile(context.Background(), b, nil, opts); err != nil || len(found) != 1 {
		t.Errorf("max 1: %d %v", len(found), err)
	}
	opts.Max = 0
	b.listErr = errors.New("NoSuchBucket")
	if _, err := Reconcile(context.Background(), b, nil, opts); err == nil || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Errorf("list error: %v", err)
	}
}

// With the relay's domains given, recipients named for other domains (a
// forged "for <rcpt>" or To) are left out, and a Received naming only
// those is passed over; an object left with none is reported, not
// submitted.
func TestReconcileDomains(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	b := &fakeBucket{
		objs: map[string]string{
			"in/mixed":   "Received: by mx for <victim@elsewhere.example>; d\r\nReceived: by inbound-smtp for shop@Relay.Example.com.; d\r\n\r\n",
			"in/foreign": "Received: by mx for <victim@elsewhere.example>; d\r\nTo: boss@elsewhere.example\r\n\r\n",
			"in/to-cc":   "To: a@relay.example.com, b@elsewhere.example\r\nCc: c@other.example.net\r\n\r\n",
		},
		mod: map[string]time.Time{"in/mixed": now.Add(-time.Hour), "in/foreign": now.Add(-time.Hour), "in/to-cc": now.Add(-time.Hour)},
	}
	sub := &fakeSubmitter{}
	found, err := Reconcile(context.Background(), b, sub, ReconcileOptions{Bucket: "b", Prefix: "in/", MinAge: time.Minute,
		Domains: []string{"relay.example.com", "Other.Example.NET."}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"in/foreign": nil,
		"in/mixed":   {"shop@relay.example.com."},
		"in/to-cc":   {"a@relay.example.com", "c@other.example.net"},
	}
	for _, f := range found {
		if !slices.Equal(f.Recipients, want[f.Key]) {
			t.Errorf("%s: recipients %q, want %q", f.Key, f.Recipients, want[f.Key])
		}
		if f.Submitted != (len(want[f.Key]) > 0) {
			t.Errorf("%s: submitted %v", f.Key, f.Submitted)
		}
	}
	if len(found) != 3 || len(sub.got) != 2 {
		t.Errorf("found %d, submitted %d", len(found), len(sub.got))
	}
	if !onDomains(nil)("a@x.example") || onDomains([]string{"y.example"})("a@x.example") {
		t.Error("onDomains")
	}
}
