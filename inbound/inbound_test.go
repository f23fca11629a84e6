package inbound_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

const (
	topic      = "arn:aws:sns:eu-west-1:111122223333:ses-inbound"
	otherTopic = "arn:aws:sns:eu-west-1:444455556666:someone-else"
	subject    = "Amazon SES Email Receipt Notification"
)

var (
	// sesS3 is a Received notification of a mail stored in S3.
	sesS3 = string(sesnotify.Received("c2v5b9sj1q0r8m7n6p5k4t3u2v1w0x9y8z7a", time.Date(2024, 3, 1, 10, 11, 12, 512e6, time.UTC),
		[]string{"shop@relay.example.com"}, sesnotify.S3Action(topic, "relay-inbound", "c2v5b9sj1q0r8m7n6p5k4t3u2v1w0x9y8z7a")).Pass().JSON())
	// sesInline is a Received notification carrying its mail (SNS action).
	sesInline = func() string {
		n := sesnotify.Received("inline-1", time.Time{}, nil, sesnotify.Action{Type: sesnotify.ActionSNS, Encoding: sesnotify.EncodingUTF8})
		n.Content = "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"
		return string(n.JSON())
	}()
)

// memQueue is an in-memory Queue.
type memQueue struct {
	mu      sync.Mutex
	entries map[string]spool.Entry
	puts    int
	err     error
	panics  bool
	block   chan struct{} // when set, Put waits for it to close (a stalled disk)
}

func newMemQueue() *memQueue { return &memQueue{entries: map[string]spool.Entry{}} }

func (s *memQueue) Put(ctx context.Context, e spool.Entry) (bool, error) {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	if s.panics {
		panic("store exploded")
	}
	if s.err != nil {
		return false, s.err
	}
	if _, ok := s.entries[e.ID]; ok {
		return true, nil
	}
	s.entries[e.ID] = e
	return false, nil
}

func (s *memQueue) stored() map[string]spool.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]spool.Entry{}
	for k, v := range s.entries {
		m[k] = v
	}
	return m
}

// env is one relay endpoint with its collaborators.
type env struct {
	signer   *snstest.Signer
	queue    *memQueue
	metrics  *telemetry.Metrics
	draining atomic.Bool
	server   *httptest.Server
	echo     http.Handler
	handler  *inbound.Handler

	confirmURL, elsewhereURL string
	confirmHits, elseHits    atomic.Int64
	confirmStatus            atomic.Int64
	hangURL                  string
	logs                     *bytes.Buffer
	fetchesBefore            int64
}

type envOptions struct {
	fetchTimeout time.Duration
	maxBody      int64
	putTimeout   time.Duration
	maxPending   int64
}

func newEnv(t testing.TB, signer *snstest.Signer, o envOptions) *env {
	t.Helper()
	e := &env{signer: signer, queue: newMemQueue(), metrics: telemetry.NewMetrics(), logs: &bytes.Buffer{}, fetchesBefore: signer.Fetches()}
	e.confirmStatus.Store(http.StatusOK)
	confirm := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.confirmHits.Add(1)
		w.WriteHeader(int(e.confirmStatus.Load()))
	}))
	elsewhere := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.elseHits.Add(1)
	}))
	release := make(chan struct{})
	hang := snstest.Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) })
	e.confirmURL = confirm.URL + "/?Action=ConfirmSubscription&TopicArn=" + topic + "&Token=abc"
	e.elsewhereURL = elsewhere.URL + "/?Action=ConfirmSubscription&TopicArn=" + topic + "&Token=abc"
	e.hangURL = hang.URL + "/hang/SimpleNotificationService-x.pem"

	v, err := sns.NewVerifier(sns.VerifierOptions{
		CertURLPrefixes: []string{strings.TrimSuffix(signer.CertURL(), snstest.CertPath), confirm.URL + "/sns/", hang.URL + "/hang/"},
		FetchTimeout:    o.fetchTimeout,
		Observe:         inbound.ObserveSNS(e.metrics),
	})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := inbound.New(inbound.Config{
		TopicARNs:    []string{topic},
		MaxBodyBytes: o.maxBody,
		RetryAfter:   7 * time.Second,
		Verifier:     v,
		Queue:        e.queue,
		Draining:     e.draining.Load,
		Metrics:      e.metrics,
		Logger:       logger,

		PutTimeout:       o.putTimeout,
		MaxPendingWrites: o.maxPending,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.handler = h
	ec := inbound.NewServer(e.metrics, logger)
	h.Register(ec)
	e.echo = ec
	e.server = snstest.Server(t, ec)
	return e
}

var client = &http.Client{Timeout: 30 * time.Second}

// post sends body to POST /sns and returns the response status and
// Retry-After header.
func (e *env) post(t testing.TB, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.server.URL+inbound.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func (e *env) requests(typ, code string) float64 {
	return testutil.ToFloat64(e.metrics.InboundRequests.WithLabelValues(typ, code))
}

// tamper re-encodes a signed body after changing it.
func tamper(t testing.TB, body []byte, f func(m *sns.Message)) []byte {
	t.Helper()
	m, err := sns.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gather returns the metrics in text exposition format.
func (e *env) gather(t testing.TB) string {
	t.Helper()
	mfs, err := e.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestInbound(t *testing.T) {
	signer := snstest.New(t)
	tests := []struct {
		name      string
		opts      envOptions
		setup     func(e *env)
		body      func(e *env) []byte
		repeat    int // extra identical posts
		code      int
		typ       string
		stored    int
		storeCall int
		check     func(t *testing.T, e *env)
	}{
		{
			name: "v1 notification stored",
			body: func(e *env) []byte { return e.signer.Notification(topic, "msg-v1", subject, sesS3, "1") },
			code: 200, typ: sns.TypeNotification, stored: 1, storeCall: 1,
			check: func(t *testing.T, e *env) {
				got := e.queue.stored()["msg-v1"]
				if got.Kind != "Received" || got.TopicARN != topic || string(got.Payload) != sesS3 || got.EnqueuedAt.IsZero() {
					t.Errorf("stored entry %+v", got)
				}
				if !strings.Contains(e.logs.String(), `"ses_message_id":"c2v5b9sj1q0r8m7n6p5k4t3u2v1w0x9y8z7a"`) ||
					!strings.Contains(e.logs.String(), `"sns_message_id":"msg-v1"`) {
					t.Errorf("log lacks ids: %s", e.logs)
				}
				if n, _ := testutil.GatherAndCount(e.metrics.Registry, "mailrelay_external_call_duration_seconds"); n == 0 {
					t.Error("certificate fetch not observed")
				}
				if n, _ := testutil.GatherAndCount(e.metrics.Registry, "mailrelay_ack_duration_seconds"); n == 0 {
					t.Error("ack duration not observed")
				}
			},
		},
		{
			name: "v2 notification with inline mail stored",
			body: func(e *env) []byte { return e.signer.Notification(topic, "msg-v2", subject, sesInline, "2") },
			code: 200, typ: sns.TypeNotification, stored: 1, storeCall: 1,
			check: func(t *testing.T, e *env) {
				if got := e.queue.stored()["msg-v2"]; got.Kind != "Received" || string(got.Payload) != sesInline {
					t.Errorf("stored entry %+v", got)
				}
			},
		},
		{
			name:   "duplicate stored once",
			body:   func(e *env) []byte { return e.signer.Notification(topic, "msg-dup", subject, sesS3, "2") },
			repeat: 2,
			code:   200, typ: sns.TypeNotification, stored: 1, storeCall: 3,
		},
		{
			name: "unrecognised inner payload still stored",
			body: func(e *env) []byte { return e.signer.Notification(topic, "msg-odd", "", "hello, not SES", "1") },
			code: 200, typ: sns.TypeNotification, stored: 1, storeCall: 1,
			check: func(t *testing.T, e *env) {
				if got := e.queue.stored()["msg-odd"]; got.Kind != "" || string(got.Payload) != "hello, not SES" {
					t.Errorf("stored entry %+v", got)
				}
			},
		},
		{
			name: "malformed json",
			body: func(e *env) []byte { return []byte(`{"Type":"Notification",`) },
			code: 400, typ: inbound.TypeInvalid,
		},
		{
			name: "missing fields",
			body: func(e *env) []byte { return []byte(`{"Type":"Notification","MessageId":"m"}`) },
			code: 400, typ: inbound.TypeInvalid,
		},
		{
			name: "unknown type",
			body: func(e *env) []byte {
				return tamper(t, e.signer.Notification(topic, "m", "", "x", "1"), func(m *sns.Message) { m.Type = "Gossip" })
			},
			code: 400, typ: inbound.TypeInvalid,
		},
		{
			name: "oversized body with content length",
			opts: envOptions{maxBody: 2048},
			body: func(e *env) []byte { return e.signer.Notification(topic, "big", "", strings.Repeat("x", 4096), "1") },
			code: 413, typ: inbound.TypeInvalid,
		},
		{
			name: "wrong topic refused before any fetch",
			body: func(e *env) []byte { return e.signer.Notification(otherTopic, "m-topic", subject, sesS3, "2") },
			code: 403, typ: sns.TypeNotification,
			check: func(t *testing.T, e *env) {
				if n := e.signer.Fetches() - e.fetchesBefore; n != 0 {
					t.Errorf("certificate fetched %d times for a refused topic", n)
				}
			},
		},
		{
			name: "forged signature",
			body: func(e *env) []byte {
				return tamper(t, e.signer.Notification(topic, "m-forged", subject, sesS3, "2"), func(m *sns.Message) {
					m.Message = strings.Replace(m.Message, "relay-inbound", "attacker-bucket", 1)
				})
			},
			code: 403, typ: sns.TypeNotification,
		},
		{
			name: "unknown signature version",
			body: func(e *env) []byte {
				return tamper(t, e.signer.Notification(topic, "m-v9", subject, sesS3, "2"), func(m *sns.Message) { m.SignatureVersion = "9" })
			},
			code: 403, typ: sns.TypeNotification,
		},
		{
			name: "disallowed cert url never fetched",
			body: func(e *env) []byte {
				m := &sns.Message{Type: sns.TypeNotification, MessageId: "m-cert", TopicArn: topic, Message: sesS3,
					Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: strings.SplitN(e.elsewhereURL, "?", 2)[0] + "cert.pem"}
				return e.signer.Body(m, "1")
			},
			code: 403, typ: sns.TypeNotification,
			check: func(t *testing.T, e *env) {
				if n := e.elseHits.Load(); n != 0 {
					t.Errorf("disallowed cert URL fetched %d times", n)
				}
			},
		},
		{
			name: "cert url answering 404 is final",
			body: func(e *env) []byte {
				return tamper(t, e.signer.Notification(topic, "m-404", subject, sesS3, "1"), func(m *sns.Message) {
					m.SigningCertURL = strings.TrimSuffix(m.SigningCertURL, snstest.CertPath) + "missing.pem"
				})
			},
			code: 403, typ: sns.TypeNotification,
		},
		{
			name: "captured delivery replayed 25 hours later",
			body: func(e *env) []byte {
				m := &sns.Message{Type: sns.TypeNotification, MessageId: "m-replay", TopicArn: topic, Message: sesS3,
					Timestamp: snstest.Timestamp(time.Now().Add(-25 * time.Hour))}
				return e.signer.Body(m, "2")
			},
			code: 403, typ: sns.TypeNotification,
			check: func(t *testing.T, e *env) {
				if !strings.Contains(e.logs.String(), `"reason":"stale_timestamp"`) {
					t.Errorf("log lacks the reason: %s", e.logs)
				}
			},
		},
		{
			name: "cert server hangs",
			opts: envOptions{fetchTimeout: 100 * time.Millisecond},
			body: func(e *env) []byte {
				m := &sns.Message{Type: sns.TypeNotification, MessageId: "m-hang", TopicArn: topic, Message: sesS3,
					Timestamp: snstest.Timestamp(time.Now()), SigningCertURL: e.hangURL}
				return e.signer.Body(m, "2")
			},
			code: 503, typ: sns.TypeNotification,
			check: func(t *testing.T, e *env) {
				if n, _ := testutil.GatherAndCount(e.metrics.Registry, "mailrelay_external_call_duration_seconds"); n != 1 {
					t.Errorf("external call series %d, want 1 (timeout)", n)
				}
				if !strings.Contains(e.gather(t), `outcome="timeout"`) {
					t.Error("no timeout outcome recorded")
				}
			},
		},
		{
			name:  "spool full",
			setup: func(e *env) { e.queue.err = spool.ErrFull },
			body:  func(e *env) []byte { return e.signer.Notification(topic, "m-full", subject, sesS3, "2") },
			code:  503, typ: sns.TypeNotification, storeCall: 1,
		},
		{
			name:  "store error",
			setup: func(e *env) { e.queue.err = errors.New("disk on fire") },
			body:  func(e *env) []byte { return e.signer.Notification(topic, "m-err", subject, sesS3, "2") },
			code:  503, typ: sns.TypeNotification, storeCall: 1,
		},
		{
			name:  "store closed",
			setup: func(e *env) { e.queue.err = spool.ErrClosed },
			body:  func(e *env) []byte { return e.signer.Notification(topic, "m-closed", subject, sesS3, "2") },
			code:  503, typ: sns.TypeNotification, storeCall: 1,
		},
		{
			name:  "draining",
			setup: func(e *env) { e.draining.Store(true) },
			body:  func(e *env) []byte { return e.signer.Notification(topic, "m-drain", subject, sesS3, "1") },
			code:  503, typ: sns.TypeNotification,
		},
		{
			name:  "store panics",
			setup: func(e *env) { e.queue.panics = true },
			body:  func(e *env) []byte { return e.signer.Notification(topic, "m-panic", subject, sesS3, "1") },
			code:  500, typ: sns.TypeNotification, storeCall: 1,
			check: func(t *testing.T, e *env) {
				if n := testutil.ToFloat64(e.metrics.Panics.WithLabelValues("inbound")); n != 1 {
					t.Errorf("panics counted %v, want 1", n)
				}
			},
		},
		{
			name: "subscription confirmation confirmed",
			body: func(e *env) []byte { return e.signer.SubscriptionConfirmation(topic, e.confirmURL) },
			code: 200, typ: sns.TypeSubscriptionConfirmation,
			check: func(t *testing.T, e *env) {
				if n := e.confirmHits.Load(); n != 1 {
					t.Errorf("SubscribeURL fetched %d times, want 1", n)
				}
			},
		},
		{
			name: "v2 subscription confirmation confirmed",
			body: func(e *env) []byte {
				return e.signer.Body(e.signer.Confirmation(sns.TypeSubscriptionConfirmation, topic, e.confirmURL), "2")
			},
			code: 200, typ: sns.TypeSubscriptionConfirmation,
		},
		{
			name: "subscribe url elsewhere refused and never fetched",
			body: func(e *env) []byte { return e.signer.SubscriptionConfirmation(topic, e.elsewhereURL) },
			code: 403, typ: sns.TypeSubscriptionConfirmation,
			check: func(t *testing.T, e *env) {
				if n := e.elseHits.Load(); n != 0 {
					t.Errorf("disallowed SubscribeURL fetched %d times", n)
				}
			},
		},
		{
			name: "subscription for another topic refused",
			body: func(e *env) []byte { return e.signer.SubscriptionConfirmation(otherTopic, e.confirmURL) },
			code: 403, typ: sns.TypeSubscriptionConfirmation,
			check: func(t *testing.T, e *env) {
				if n := e.confirmHits.Load(); n != 0 {
					t.Errorf("SubscribeURL of a refused topic fetched %d times", n)
				}
			},
		},
		{
			name:  "subscription confirmation fails transiently",
			setup: func(e *env) { e.confirmStatus.Store(http.StatusBadGateway) },
			body:  func(e *env) []byte { return e.signer.SubscriptionConfirmation(topic, e.confirmURL) },
			code:  503, typ: sns.TypeSubscriptionConfirmation,
		},
		{
			name: "forged subscription confirmation",
			body: func(e *env) []byte {
				return tamper(t, e.signer.SubscriptionConfirmation(topic, e.confirmURL), func(m *sns.Message) { m.Token = "other" })
			},
			code: 403, typ: sns.TypeSubscriptionConfirmation,
			check: func(t *testing.T, e *env) {
				if n := e.confirmHits.Load(); n != 0 {
					t.Errorf("SubscribeURL of a forged confirmation fetched %d times", n)
				}
			},
		},
		{
			name: "unsubscribe confirmation acknowledged, not acted on",
			body: func(e *env) []byte { return e.signer.UnsubscribeConfirmation(topic, e.confirmURL) },
			code: 200, typ: sns.TypeUnsubscribeConfirmation,
			check: func(t *testing.T, e *env) {
				if n := e.confirmHits.Load(); n != 0 {
					t.Errorf("unsubscribe confirmation re-subscribed (%d GETs)", n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, signer, tt.opts)
			if tt.setup != nil {
				tt.setup(e)
			}
			body := tt.body(e)
			for i := 0; i <= tt.repeat; i++ {
				code, retryAfter := e.post(t, bytes.NewReader(body))
				if code != tt.code {
					t.Fatalf("post %d: status %d, want %d; log:\n%s", i, code, tt.code, e.logs)
				}
				if code == 503 && retryAfter != "7" {
					t.Errorf("503 without Retry-After 7: %q", retryAfter)
				}
				if code != 503 && retryAfter != "" {
					t.Errorf("Retry-After %q on %d", retryAfter, code)
				}
			}
			if got := len(e.queue.stored()); got != tt.stored {
				t.Errorf("stored %d entries, want %d", got, tt.stored)
			}
			if e.queue.puts != tt.storeCall {
				t.Errorf("Queue.Put called %d times, want %d", e.queue.puts, tt.storeCall)
			}
			if got := e.requests(tt.typ, strconv.Itoa(tt.code)); got != float64(tt.repeat+1) {
				t.Errorf("mailrelay_inbound_requests_total{type=%q,code=%d} = %v, want %d", tt.typ, tt.code, got, tt.repeat+1)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}
