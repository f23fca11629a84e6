package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

type fakeQueue struct {
	dead     []spool.DeadLetter
	redriven []string
	put      map[string]spool.Entry
	putErr   error
	calls    int // every call of any method
}

func (f *fakeQueue) Put(ctx context.Context, e spool.Entry) (bool, error) {
	f.calls++
	if f.putErr != nil {
		return false, f.putErr
	}
	if f.put == nil {
		f.put = map[string]spool.Entry{}
	}
	if _, ok := f.put[e.ID]; ok {
		return true, nil
	}
	f.put[e.ID] = e
	return false, nil
}

func (f *fakeQueue) DeadLetters(limit int) ([]spool.DeadLetter, error) {
	f.calls++
	return f.dead[:min(limit, len(f.dead))], nil
}

func (f *fakeQueue) Redrive(ids ...string) (int, error) {
	f.calls++
	if len(ids) == 0 {
		n := len(f.dead)
		for _, d := range f.dead {
			f.redriven = append(f.redriven, d.ID)
		}
		f.dead = nil
		return n, nil
	}
	n := 0
	var missing []string
	for _, id := range ids {
		i := slices.IndexFunc(f.dead, func(d spool.DeadLetter) bool { return d.ID == id })
		if i < 0 {
			missing = append(missing, id)
			continue
		}
		n++
		f.redriven = append(f.redriven, id)
		f.dead = slices.Delete(f.dead, i, i+1)
	}
	if len(missing) > 0 {
		return n, fmt.Errorf("%w: dead letters %s", spool.ErrNotFound, strings.Join(missing, ", "))
	}
	return n, nil
}

// fakeSNS is the SNS intake: it answers with code and reason and records
// what it was handed.
type fakeSNS struct {
	code   int
	reason string
	got    [][]byte
}

func (f *fakeSNS) Redeliver(ctx context.Context, body []byte) (int, string, error) {
	f.got = append(f.got, body)
	if f.code != http.StatusOK {
		return f.code, f.reason, errors.New("refused: " + f.reason)
	}
	return f.code, f.reason, nil
}

const (
	testToken  = "s3cret-t0ken-0123456789abcdef"
	testTopic  = "arn:aws:sns:us-east-1:123456789012:inbound"
	testBucket = "mail-inbound"
)

// newAPI returns the admin API on q and sns with the test settings (the
// token unless open), changed by mutate.
func newAPI(t *testing.T, q *fakeQueue, sns *fakeSNS, open bool, mutate func(*Config)) http.Handler {
	t.Helper()
	cfg := Config{
		Queue: q, Token: testToken, Loopback: true,
		Buckets: []string{testBucket}, TopicARNs: []string{testTopic},
		Domains:         func() []string { return []string{"relay.example.com", "Other.Example."} },
		SNS:             sns,
		SNSMaxBodyBytes: 128 << 10,
		Logger:          slog.New(slog.DiscardHandler),
		Now:             func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) },
	}
	if open {
		cfg.Token = ""
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type req struct {
	method, path, host string
	header             map[string]string
	body               string
	chunked            bool // no Content-Length
}

// do runs r against h; a body gets Content-Type application/json unless
// r.header names one ("" for none), and the bearer token unless r.header
// names Authorization.
func do(h http.Handler, r req) *httptest.ResponseRecorder {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // unknown length
		}
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.chunked {
		hr.ContentLength = -1
	}
	hr.Host = r.host
	if hr.Host == "" {
		hr.Host = "127.0.0.1:8082"
	}
	if r.method == http.MethodPost {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

// TestGuard: every rule of the admin API, for each a request refused and,
// where it matters, one let through; refused requests never reach the
// spool, and every answer is JSON.
func TestGuard(t *testing.T) {
	redrive := `{"ids":["a"]}`
	auth := func(v string) map[string]string { return map[string]string{"Authorization": v} }
	tests := []struct {
		name string
		open bool // no token (loopback listener)
		r    req
		code int
		want string // in the body
	}{
		// The token.
		{name: "right token", r: req{method: "GET", path: "/deadletters"}, code: 200},
		{name: "right token, scheme in lower case", r: req{method: "GET", path: "/deadletters", header: auth("bearer " + testToken)}, code: 200},
		{name: "no Authorization", r: req{method: "GET", path: "/deadletters", header: auth("")}, code: 401, want: "bearer token"},
		{name: "wrong token, same length", r: req{method: "GET", path: "/deadletters", header: auth("Bearer " + strings.Repeat("x", len(testToken)))}, code: 401},
		{name: "wrong token, a prefix of it", r: req{method: "GET", path: "/deadletters", header: auth("Bearer " + testToken[:len(testToken)-1])}, code: 401},
		{name: "wrong token, it with more after", r: req{method: "GET", path: "/deadletters", header: auth("Bearer " + testToken + "x")}, code: 401},
		{name: "empty bearer", r: req{method: "GET", path: "/deadletters", header: auth("Bearer ")}, code: 401},
		{name: "token as Basic", r: req{method: "GET", path: "/deadletters", header: auth("Basic " + testToken)}, code: 401},
		{name: "token without scheme", r: req{method: "GET", path: "/deadletters", header: auth(testToken)}, code: 401},
		{name: "token on a POST refused before the body", r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: auth("Bearer nope")}, code: 401},
		{name: "with a token any Host", r: req{method: "GET", path: "/deadletters", host: "relay.internal:8082"}, code: 200},

		// Without a token: a loopback Host (DNS rebinding).
		{name: "open: 127.0.0.1", open: true, r: req{method: "GET", path: "/deadletters", host: "127.0.0.1:8082"}, code: 200},
		{name: "open: localhost", open: true, r: req{method: "GET", path: "/deadletters", host: "localhost:8082"}, code: 200},
		{name: "open: LOCALHOST. without port", open: true, r: req{method: "GET", path: "/deadletters", host: "LOCALHOST."}, code: 200},
		{name: "open: [::1]", open: true, r: req{method: "GET", path: "/deadletters", host: "[::1]:8082"}, code: 200},
		{name: "open: 127.0.0.2", open: true, r: req{method: "GET", path: "/deadletters", host: "127.0.0.2"}, code: 200},
		{name: "open: rebinding name", open: true, r: req{method: "GET", path: "/deadletters", host: "evil.example:8082"}, code: 403, want: "loopback"},
		{name: "open: name starting like loopback", open: true, r: req{method: "GET", path: "/deadletters", host: "127.0.0.1.evil.example"}, code: 403},
		{name: "open: localhost as a subdomain", open: true, r: req{method: "GET", path: "/deadletters", host: "localhost.evil.example:8082"}, code: 403},
		{name: "open: all interfaces", open: true, r: req{method: "GET", path: "/deadletters", host: "0.0.0.0:8082"}, code: 403},
		{name: "open: a LAN address", open: true, r: req{method: "POST", path: "/deadletters/redrive", body: redrive, host: "192.168.1.10:8082"}, code: 403},
		{name: "open: no token asked for", open: true, r: req{method: "GET", path: "/deadletters", header: auth("")}, code: 200},

		// Cross-site browser requests (CSRF), with or without a token.
		{name: "open: Origin of another site", open: true, r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Origin": "http://evil.example"}}, code: 403, want: "cross-site"},
		{name: "open: Origin null", open: true, r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Origin": "null"}}, code: 403},
		{name: "open: Origin loopback", open: true, r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Origin": "http://localhost:8082"}}, code: 200},
		{name: "open: Sec-Fetch-Site cross-site", open: true, r: req{method: "GET", path: "/deadletters", header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, code: 403, want: "Sec-Fetch-Site"},
		{name: "open: Sec-Fetch-Site same-origin", open: true, r: req{method: "GET", path: "/deadletters", header: map[string]string{"Sec-Fetch-Site": "same-origin"}}, code: 200},
		{name: "token: Origin of another site", r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Origin": "https://evil.example"}}, code: 403},
		{name: "token: Sec-Fetch-Site cross-site", r: req{method: "GET", path: "/deadletters", header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, code: 403},

		// JSON only.
		{name: "form post", r: req{method: "POST", path: "/deadletters/redrive", body: "ids=a", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, code: 415},
		{name: "text/plain post", r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Content-Type": "text/plain"}}, code: 415},
		{name: "post without Content-Type", r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Content-Type": ""}}, code: 415},
		{name: "empty post without Content-Type", r: req{method: "POST", path: "/deadletters/redrive", header: map[string]string{"Content-Type": ""}}, code: 415},
		{name: "json with charset", r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}}, code: 200},
		{name: "json look-alike", r: req{method: "POST", path: "/deadletters/redrive", body: redrive, header: map[string]string{"Content-Type": "application/jsonp"}}, code: 415},
		{name: "unknown field", r: req{method: "POST", path: "/deadletters/redrive", body: `{"ids":["a"],"force":true}`}, code: 400, want: "unknown field"},
		{name: "two objects", r: req{method: "POST", path: "/deadletters/redrive", body: redrive + redrive}, code: 400, want: "one JSON object"},
		{name: "not json", r: req{method: "POST", path: "/deadletters/redrive", body: `{"ids":`}, code: 400},
		{name: "empty body", r: req{method: "POST", path: "/deadletters/redrive"}, code: 400, want: "empty body"},
		{name: "oversize, declared", r: req{method: "POST", path: "/deadletters/redrive", body: `{"ids":["` + strings.Repeat("a", DefaultMaxBodyBytes) + `"]}`}, code: 413},
		{name: "oversize, chunked", r: req{method: "POST", path: "/deadletters/redrive", body: `{"ids":["` + strings.Repeat("a", DefaultMaxBodyBytes) + `"]}`, chunked: true}, code: 413},

		// Methods and paths.
		{name: "GET on a POST route", r: req{method: "GET", path: "/reconcile"}, code: 405, want: "method not allowed"},
		{name: "DELETE dead letters", r: req{method: "DELETE", path: "/deadletters"}, code: 405},
		{name: "PUT redrive", r: req{method: "PUT", path: "/deadletters/redrive", body: redrive}, code: 405},
		{name: "unknown path", r: req{method: "GET", path: "/debug/vars"}, code: 404},
		{name: "unknown path without token", r: req{method: "GET", path: "/debug/vars", header: auth("")}, code: 401},
		{name: "profiles without the token", r: req{method: "GET", path: "/debug/pprof/heap", header: auth("")}, code: 401, want: "bearer token"},
		{name: "CPU profile with a wrong token", r: req{method: "GET", path: "/debug/pprof/profile?seconds=1", header: auth("Bearer nope")}, code: 401},
		{name: "profiles are GET only", r: req{method: "POST", path: "/debug/pprof/profile", body: "{}"}, code: 405},
		{name: "profiles from another site", r: req{method: "GET", path: "/debug/pprof/heap", header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, code: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{dead: []spool.DeadLetter{{Entry: spool.Entry{ID: "a"}, Reason: "ses_rejected"}}}
			w := do(newAPI(t, q, &fakeSNS{code: 200}, tt.open, nil), tt.r)
			body := w.Body.String()
			if w.Code != tt.code || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s, want %d containing %q", w.Code, body, tt.code, tt.want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var v any
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
				t.Errorf("answer is not JSON: %v: %s", err, body)
			}
			if w.Code >= 400 {
				var e ErrorResponse
				if json.Unmarshal(w.Body.Bytes(), &e); e.Error == "" {
					t.Errorf("error answer without error: %s", body)
				}
				if w.Code != http.StatusNotFound && w.Code != http.StatusBadRequest && q.calls != 0 {
					t.Errorf("refused request reached the spool (%d calls)", q.calls)
				}
			}
			if w.Code == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
			if w.Code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if strings.Contains(body, testToken) {
				t.Error("answer contains the token")
			}
		})
	}
}

// TestNew: the API refuses to be built open on a listener that is not
// loopback, or with a token too weak to be one.
// TestProfiles: Go's profiles are served behind the lock (TestGuard has
// the refusals), in pprof's formats.
func TestProfiles(t *testing.T) {
	for _, tt := range []struct {
		name string
		open bool
		r    req
		want string
	}{
		{name: "index", r: req{method: "GET", path: "/debug/pprof/"}, want: "goroutine"},
		{name: "goroutines as text", r: req{method: "GET", path: "/debug/pprof/goroutine?debug=1"}, want: "goroutine profile:"},
		{name: "open loopback listener", open: true, r: req{method: "GET", path: "/debug/pprof/goroutine?debug=1", host: "127.0.0.1:8082"}, want: "goroutine profile:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := do(newAPI(t, &fakeQueue{}, &fakeSNS{code: 200}, tt.open, nil), tt.r)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), tt.want) {
				t.Fatalf("%d %.300s, want 200 containing %q", w.Code, w.Body.String(), tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	q := &fakeQueue{}
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"token, not loopback", Config{Queue: q, Token: testToken}, true},
		{"no token, loopback", Config{Queue: q, Loopback: true}, true},
		{"no token, not loopback", Config{Queue: q}, false},
		{"short token", Config{Queue: q, Token: "short", Loopback: true}, false},
		{"token with a space", Config{Queue: q, Token: "0123456789 abcdef", Loopback: true}, false},
		{"no queue", Config{Token: testToken}, false},
	} {
		if _, err := New(tt.cfg); (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestListAndRedrive(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	fs := &fakeQueue{dead: []spool.DeadLetter{
		{Entry: spool.Entry{ID: "a", Payload: []byte("xyz"), Attempts: 2}, Reason: "malformed_mail: no header", DeadAt: now},
		{Entry: spool.Entry{ID: "b"}, Reason: "ses_rejected", DeadAt: now},
		{Entry: spool.Entry{ID: "c"}, Reason: "ses_rejected", DeadAt: now},
	}}
	srv := httptest.NewServer(newAPI(t, fs, nil, false, func(c *Config) { c.SNS = nil }))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Token: testToken}
	ctx := context.Background()

	var se *StatusError
	if _, err := (&Client{BaseURL: srv.URL}).List(ctx, 2); !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("without token: %v", err)
	}
	items, err := c.List(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ID != "a" || items[0].Bytes != 3 || !strings.HasPrefix(items[0].Reason, "malformed_mail") {
		t.Fatalf("list = %+v", items)
	}
	if r, err := c.Redrive(ctx, []string{"b"}, false); err != nil || r.Redriven != 1 || r.NotFound != "" {
		t.Fatalf("redrive b = %+v, %v", r, err)
	}
	if _, err := c.Redrive(ctx, []string{"zzz"}, false); !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := c.Redrive(ctx, nil, false); !errors.As(err, &se) || se.Code != 400 {
		t.Fatalf("neither ids nor all: %v", err)
	}
	// Partial: a is redriven, zzz is reported, nothing is hidden.
	if r, err := c.Redrive(ctx, []string{"a", "zzz"}, false); err != nil || r.Redriven != 1 || !strings.Contains(r.NotFound, "zzz") {
		t.Fatalf("partial redrive = %+v, %v", r, err)
	}
	if r, err := c.Redrive(ctx, nil, true); err != nil || r.Redriven != 1 {
		t.Fatalf("redrive all = %+v, %v", r, err)
	}
	if !slices.Equal(fs.redriven, []string{"b", "a", "c"}) {
		t.Errorf("redriven %q", fs.redriven)
	}
	if err := c.Do(ctx, "GET", "/deadletters?limit=-1", nil, nil); !errors.As(err, &se) || se.Code != 400 {
		t.Errorf("bad limit: %v", err)
	}
	if err := c.Do(ctx, "POST", SNSRedrivePath, nil, nil); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("SNS redrive without an intake: %v", err)
	}
}

// TestReconcile: references only, to the relay's buckets, topics and
// domains; the relay builds the notification with every verdict
// PROCESSING_FAILED.
func TestReconcile(t *testing.T) {
	ref := func(mut func(m map[string]any)) string {
		m := map[string]any{"bucket": testBucket, "key": "mail/abc", "recipients": []string{"Shop@Relay.Example.com"}}
		if mut != nil {
			mut(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	notification := string(sesnotify.Received("abc", time.Now(), []string{"shop@relay.example.com"}, sesnotify.S3Action(testTopic, testBucket, "mail/abc")).JSON())
	tests := []struct {
		name    string
		body    string
		buckets []string // nil: the test's
		code    int
		want    string
	}{
		{name: "inline content", body: ref(func(m map[string]any) { m["content"] = "From: IT Support <it@evil.example>\r\n\r\nhi" }), code: 400, want: `unknown field \"content\"`},
		{name: "a whole notification", body: notification, code: 400, want: "references only"},
		{name: "verdicts given", body: ref(func(m map[string]any) { m["spamVerdict"] = map[string]string{"status": "FAIL"} }), code: 400},
		{name: "no bucket", body: ref(func(m map[string]any) { delete(m, "bucket") }), code: 400},
		{name: "bucket outside the configuration", body: ref(func(m map[string]any) { m["bucket"] = "someone-elses" }), code: 403, want: "not one of the relay's"},
		{name: "reconcile off without buckets", body: ref(nil), buckets: []string{}, code: 403, want: "RELAY_S3_BUCKETS"},
		{name: "bucket name with a path", body: ref(func(m map[string]any) { m["bucket"] = testBucket + "/../x" }), code: 400},
		{name: "key with a control character", body: ref(func(m map[string]any) { m["key"] = "mail/a\nb" }), code: 400},
		{name: "key of a folder", body: ref(func(m map[string]any) { m["key"] = "mail/" }), code: 400},
		{name: "key too long", body: ref(func(m map[string]any) { m["key"] = strings.Repeat("k", 1025) }), code: 400},
		{name: "no recipients", body: ref(func(m map[string]any) { m["recipients"] = []string{} }), code: 400},
		{name: "recipient off-domain", body: ref(func(m map[string]any) { m["recipients"] = []string{"shop@relay.example.com", "ceo@victim.example"} }), code: 403, want: "not on the relay's domains"},
		{name: "recipient on a subdomain", body: ref(func(m map[string]any) { m["recipients"] = []string{"a@evil.relay.example.com"} }), code: 403},
		{name: "recipient with a display name", body: ref(func(m map[string]any) { m["recipients"] = []string{"Shop <shop@relay.example.com>"} }), code: 400},
		{name: "too many recipients", body: ref(func(m map[string]any) {
			var r []string
			for i := range 101 {
				r = append(r, fmt.Sprintf("a%d@relay.example.com", i))
			}
			m["recipients"] = r
		}), code: 400},
		{name: "topic not the relay's", body: ref(func(m map[string]any) { m["topic_arn"] = "arn:aws:sns:us-east-1:1:other" }), code: 403},
		{name: "valid reference", body: ref(nil), code: 202, want: `"id": "reconcile:mail-inbound/mail/abc"`},
		{name: "valid, second domain, timestamp and topic", body: ref(func(m map[string]any) {
			m["key"], m["recipients"], m["timestamp"], m["topic_arn"] = "mail/def", []string{"x@other.example"}, "2026-11-23T10:00:00Z", testTopic
		}), code: 202, want: `"duplicate": false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQueue{}
			h := newAPI(t, q, nil, false, func(c *Config) {
				if tt.buckets != nil {
					c.Buckets = tt.buckets
				}
			})
			w := do(h, req{method: "POST", path: "/reconcile", body: tt.body})
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
				t.Fatalf("%d %s, want %d containing %q", w.Code, w.Body, tt.code, tt.want)
			}
			if tt.code != http.StatusAccepted {
				if len(q.put) != 0 {
					t.Errorf("refused reference spooled %v", q.put)
				}
				return
			}
			if len(q.put) != 1 {
				t.Fatalf("spooled %d", len(q.put))
			}
			for id, e := range q.put {
				n, err := sesnotify.Parse(e.Payload)
				if err != nil {
					t.Fatal(err)
				}
				r := n.Receipt
				if n.NotificationType != "Received" || r.Action.Type != sesnotify.ActionS3 || r.Action.BucketName != testBucket ||
					"reconcile:"+testBucket+"/"+r.Action.ObjectKey != id || r.Action.TopicArn != testTopic || e.Kind != "Received" {
					t.Errorf("notification %+v receipt %+v", n, r)
				}
				if len(r.Recipients) != 1 || r.Recipients[0] != strings.ToLower(r.Recipients[0]) {
					t.Errorf("recipients %q", r.Recipients)
				}
				if _, ok, _ := n.InlineContent(); ok {
					t.Error("inline content")
				}
				for name, v := range map[string]sesnotify.Verdict{"spam": r.SpamVerdict, "virus": r.VirusVerdict, "spf": r.SPFVerdict, "dkim": r.DKIMVerdict, "dmarc": r.DMARCVerdict} {
					if v.Status != sesnotify.StatusProcessingFail {
						t.Errorf("%s verdict %q, want %s", name, v.Status, sesnotify.StatusProcessingFail)
					}
				}
				if n.Mail.Source != "" {
					t.Errorf("invented an envelope sender %q", n.Mail.Source)
				}
			}
		})
	}

	// The same object twice is a duplicate; a full spool is 503 with Retry-After.
	q := &fakeQueue{}
	h := newAPI(t, q, nil, false, nil)
	if w := do(h, req{method: "POST", path: "/reconcile", body: ref(nil)}); w.Code != 202 {
		t.Fatal(w.Code)
	}
	if w := do(h, req{method: "POST", path: "/reconcile", body: ref(nil)}); w.Code != 202 || !strings.Contains(w.Body.String(), `"duplicate": true`) {
		t.Errorf("again: %d %s", w.Code, w.Body)
	}
	q.putErr = spool.ErrFull
	if w := do(h, req{method: "POST", path: "/reconcile", body: ref(func(m map[string]any) { m["key"] = "mail/x" })}); w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("full spool: %d %v", w.Code, w.Header())
	}
}

// TestRedriveSNS: the envelope goes to the SNS intake unchanged, its
// decision is the answer (with the reason), and nothing reaches it without
// the token, as another content type, or over the SNS size limit.
func TestRedriveSNS(t *testing.T) {
	envelope := `{"Type":"Notification","MessageId":"m1","TopicArn":"` + testTopic + `"}`
	tests := []struct {
		name       string
		intake     fakeSNS
		r          req
		code       int
		want       string
		handedOver bool
	}{
		{name: "stored", intake: fakeSNS{code: 200, reason: "stored"}, r: req{body: envelope}, code: 200, want: `"result": "stored"`, handedOver: true},
		{name: "duplicate", intake: fakeSNS{code: 200, reason: "duplicate"}, r: req{body: envelope}, code: 200, want: "duplicate", handedOver: true},
		{name: "bad signature", intake: fakeSNS{code: 403, reason: "bad_signature"}, r: req{body: envelope}, code: 403, want: `"reason": "bad_signature"`, handedOver: true},
		{name: "spool full", intake: fakeSNS{code: 503, reason: "spool_full"}, r: req{body: envelope}, code: 503, want: "spool_full", handedOver: true},
		{name: "no token", intake: fakeSNS{code: 200}, r: req{body: envelope, header: map[string]string{"Authorization": ""}}, code: 401},
		{name: "as text/plain, the way SNS posts", intake: fakeSNS{code: 200}, r: req{body: envelope, header: map[string]string{"Content-Type": "text/plain; charset=UTF-8"}}, code: 415},
		{name: "over the SNS limit", intake: fakeSNS{code: 200}, r: req{body: `{"Message":"` + strings.Repeat("x", 128<<10) + `"}`}, code: 413},
		{name: "over the SNS limit, chunked", intake: fakeSNS{code: 200}, r: req{body: `{"Message":"` + strings.Repeat("x", 128<<10) + `"}`, chunked: true}, code: 413},
		{name: "larger than other bodies, within the SNS limit", intake: fakeSNS{code: 200, reason: "stored"}, r: req{body: `{"Message":"` + strings.Repeat("x", 100<<10) + `"}`}, code: 200, handedOver: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			intake := tt.intake
			tt.r.method, tt.r.path = "POST", SNSRedrivePath
			w := do(newAPI(t, &fakeQueue{}, &intake, false, nil), tt.r)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
				t.Fatalf("%d %s, want %d containing %q", w.Code, w.Body, tt.code, tt.want)
			}
			if got := len(intake.got) == 1 && string(intake.got[0]) == tt.r.body; got != tt.handedOver {
				t.Errorf("handed over %v (%d), want %v", got, len(intake.got), tt.handedOver)
			}
			if w.Code == 503 && w.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// FuzzAdmin: whatever the path, headers and body, the API answers JSON,
// never panics, and spools only for a 202 to an authorized, well-formed
// reconcile reference to the relay's bucket and domains.
func FuzzAdmin(f *testing.F) {
	f.Add("POST", "/reconcile", "Bearer "+testToken, "application/json", "", `{"bucket":"mail-inbound","key":"k/1","recipients":["a@relay.example.com"]}`)
	f.Add("POST", "/reconcile", "Bearer "+testToken, "application/json", "", `{"notificationType":"Received","content":"x"}`)
	f.Add("POST", "/deadletters/redrive", "Bearer x", "text/plain", "http://evil.example", `{"all":true}`)
	f.Add("GET", "/deadletters?limit=5", "Bearer "+testToken, "", "", "")
	f.Add("POST", SNSRedrivePath, "Bearer "+testToken, "application/json; charset=utf-8", "null", `{"Type":"Notification"}`)
	f.Fuzz(func(t *testing.T, method, path, authz, ctype, origin, body string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return
		}
		q := &fakeQueue{dead: []spool.DeadLetter{{Entry: spool.Entry{ID: "a"}, Reason: "r"}}}
		h := newAPI(t, q, &fakeSNS{code: 403, reason: "bad_signature"}, false, nil)
		if _, err := url.ParseRequestURI(path); err != nil {
			return
		}
		hr := httptest.NewRequest(method, "http://127.0.0.1:8082"+path, strings.NewReader(body))
		for k, v := range map[string]string{"Authorization": authz, "Content-Type": ctype, "Origin": origin} {
			if v != "" && !strings.ContainsAny(v, "\r\n\x00") {
				hr.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, hr)
		var v any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("%d answer is not JSON: %q", w.Code, w.Body)
		}
		if len(q.put) > 0 && (w.Code != http.StatusAccepted || hr.Header.Get("Authorization") != "Bearer "+testToken) {
			t.Fatalf("spooled with %d", w.Code)
		}
		for _, e := range q.put {
			n, err := sesnotify.Parse(e.Payload)
			if err != nil || n.Receipt.Action.BucketName != testBucket || n.Receipt.Action.Type != sesnotify.ActionS3 {
				t.Fatalf("spooled %s (%v)", e.Payload, err)
			}
		}
	})
}

func validMethod(m string) bool {
	return m != "" && !strings.ContainsFunc(m, func(r rune) bool { return !(r >= 'A' && r <= 'Z') })
}
