// Package inbound is the relay's SNS HTTP endpoint, POST /sns. It decides
// every delivery's fate before answering, following the acknowledgement
// contract: 200 only once the notification is durably stored (or known as a
// duplicate), 503 with Retry-After whenever the failure is ours or transient,
// and a final 4xx only for deliveries that can never succeed.
//
// A request waits for nothing but the signature check (certificate cached,
// one bounded download otherwise) and the queue's fsync: no S3, no SES.
package inbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Queue persists accepted notifications for the workers (implemented by
// *spool.Spool). Put returns only once e is durable (fsync'd), or reports
// duplicate when an entry with e.ID was already stored. It returns
// spool.ErrFull when at its bound.
type Queue interface {
	Put(ctx context.Context, e spool.Entry) (duplicate bool, err error)
}

// Defaults for Config.
const (
	// DefaultMaxBodyBytes is the largest delivery accepted. SNS caps the
	// Message at 256 KiB (SES inline mail, SNS action, at 150 KB); the JSON
	// envelope and its escaping (up to 6 bytes for one) add to it.
	DefaultMaxBodyBytes int64 = 1 << 20
	// DefaultRetryAfter is the Retry-After of 503 answers.
	DefaultRetryAfter = 5 * time.Second
)

// Path is where SNS posts deliveries.
const Path = "/sns"

// TypeInvalid is the type label of requests that are not a parseable SNS
// delivery.
const TypeInvalid = "invalid"

// Config configures a Handler.
type Config struct {
	// TopicARNs is the allow-list of SNS topics; anything else is refused
	// (403). Required.
	TopicARNs []string
	// MaxBodyBytes caps the body (413 above). Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// RetryAfter is sent with every 503. Default DefaultRetryAfter.
	RetryAfter time.Duration
	// Verifier authenticates deliveries and confirms subscriptions. Required.
	Verifier *sns.Verifier
	// Queue persists notifications. Required.
	Queue Queue
	// Draining, if set and true, makes every delivery a 503 before it is
	// stored: the relay is shutting down and SNS should retry elsewhere.
	Draining func() bool
	// Metrics, if set, receives mailrelay_inbound_requests_total,
	// mailrelay_ack_duration_seconds and mailrelay_panics_total{where="inbound"}.
	Metrics *telemetry.Metrics
	// Logger, if set, logs every delivery's outcome.
	Logger *slog.Logger
	// PutTimeout bounds how long a request waits for its durable write
	// (default DefaultPutTimeout). A write still running then is answered
	// 503; if it completes, SNS's retry is recognised as a duplicate. A
	// stalled disk therefore cannot hold inbound connections (incident 004).
	PutTimeout time.Duration
	// MaxPendingWrites bounds writes still running after their request was
	// answered (default DefaultMaxPendingWrites); past it, deliveries are
	// answered 503 at once.
	MaxPendingWrites int64
	// BodyTimeout bounds reading a request's body, from the moment its
	// headers are read (default DefaultBodyTimeout): a drip-fed body is cut
	// (503, read_error) instead of holding a connection for the server's
	// whole ReadTimeout.
	BodyTimeout time.Duration
}

// Defaults of Config.PutTimeout and Config.MaxPendingWrites.
const (
	DefaultPutTimeout       = 5 * time.Second
	DefaultMaxPendingWrites = 1024
	DefaultBodyTimeout      = 5 * time.Second
)

// Handler serves POST /sns.
type Handler struct {
	topics     map[string]bool
	maxBody    int64
	retryAfter string
	verifier   *sns.Verifier
	queue      Queue
	draining   func() bool
	metrics    *telemetry.Metrics
	log        *slog.Logger
	now        func() time.Time

	putTimeout  time.Duration
	maxPending  int64
	pending     atomic.Int64 // store writes in progress
	bodyTimeout time.Duration
	active      atomic.Int64 // deliveries being handled
}

// Active is the number of deliveries being handled, from the moment the
// handler starts until it has answered: the relay's workers give way to
// them when the CPU is short (mailproc.Config.IntakeActive).
func (h *Handler) Active() int64 { return h.active.Load() }

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	h := &Handler{
		topics:   map[string]bool{},
		maxBody:  cfg.MaxBodyBytes,
		verifier: cfg.Verifier,
		queue:    cfg.Queue,
		draining: cfg.Draining,
		metrics:  cfg.Metrics,
		log:      cfg.Logger,
		now:      time.Now,

		putTimeout: cfg.PutTimeout,
		maxPending: cfg.MaxPendingWrites,

		bodyTimeout: cfg.BodyTimeout,
	}
	if h.bodyTimeout <= 0 {
		h.bodyTimeout = DefaultBodyTimeout
	}
	if h.putTimeout <= 0 {
		h.putTimeout = DefaultPutTimeout
	}
	if h.maxPending <= 0 {
		h.maxPending = DefaultMaxPendingWrites
	}
	for _, t := range cfg.TopicARNs {
		if t = strings.TrimSpace(t); t != "" {
			h.topics[t] = true
		}
	}
	if len(h.topics) == 0 {
		return nil, errors.New("inbound: no SNS topic ARNs allowed")
	}
	if h.verifier == nil {
		return nil, errors.New("inbound: no verifier")
	}
	if h.queue == nil {
		return nil, errors.New("inbound: no queue")
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	ra := cfg.RetryAfter
	if ra <= 0 {
		ra = DefaultRetryAfter
	}
	h.retryAfter = strconv.FormatInt(int64((ra+time.Second-1)/time.Second), 10)
	if h.draining == nil {
		h.draining = func() bool { return false }
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// Register adds POST /sns to e.
func (h *Handler) Register(e *echo.Echo) {
	e.POST(Path, h.ServeSNS)
}

// outcome is what the handler decided about one delivery.
type outcome struct {
	typ    string // SNS Type, or TypeInvalid
	code   int
	reason string // short, for logs and the response body
	err    error
	snsID  string
	sesID  string
	topic  string
	kind   string
}

// ServeSNS handles one SNS delivery. It always answers itself and returns
// nil; a panic is recovered, counted, and answered 500.
func (h *Handler) ServeSNS(c echo.Context) (err error) {
	start := time.Now()
	h.active.Add(1)
	defer h.active.Add(-1)
	o := &outcome{typ: TypeInvalid}
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			if h.metrics != nil {
				h.metrics.Panics.WithLabelValues("inbound").Inc()
			}
			o.code, o.reason, o.err = http.StatusInternalServerError, "panic", fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			if !c.Response().Committed {
				c.String(o.code, o.reason+"\n")
			}
			err = nil
		}
		h.record(o, time.Since(start))
	}()
	h.handle(c.Request(), http.NewResponseController(c.Response()), o)
	if o.code == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", h.retryAfter)
	}
	c.String(o.code, o.reason+"\n")
	return nil
}

func (o *outcome) set(code int, reason string, err error) {
	o.code, o.reason, o.err = code, reason, err
}

// handle decides the delivery's fate, in the contract's order: size, parse,
// (draining), topic allow-list, certificate URL rule, signature, act. A
// delivery that cannot be accepted is answered per status(err).
func (h *Handler) handle(r *http.Request, rc *http.ResponseController, o *outcome) {
	reason, err := h.decide(r, rc, o)
	if err != nil {
		code, reason := status(err)
		o.set(code, reason, err)
		return
	}
	o.set(http.StatusOK, reason, o.err)
}

// decide returns the reason of a 200 answer, or the error that refuses the
// delivery (one status answers for).
func (h *Handler) decide(r *http.Request, rc *http.ResponseController, o *outcome) (string, error) {
	body, err := h.readBody(r, rc)
	if err != nil {
		return "", err
	}
	return h.decideBody(r.Context(), body, o, false)
}

// decideBody is decide once the body is read. A redelivery (the admin
// API's dead-letter-queue redrive) must be a Notification and its
// Timestamp may be up to RedeliveryMaxAge old.
func (h *Handler) decideBody(ctx context.Context, body []byte, o *outcome, redelivery bool) (string, error) {
	m, err := sns.Parse(body)
	if err != nil {
		return "", err
	}
	o.typ, o.snsID, o.topic = m.Type, m.MessageId, m.TopicArn
	if redelivery && m.Type != sns.TypeNotification {
		return "", fmt.Errorf("%w: a redelivery must be a Notification, not %.40q", errNotNotification, m.Type)
	}

	if h.draining() {
		return "", errDraining
	}
	if !h.topics[m.TopicArn] {
		return "", fmt.Errorf("%w: %.200q", errTopicNotAllowed, m.TopicArn)
	}
	if !h.verifier.CertURLAllowed(m.SigningCertURL) {
		return "", fmt.Errorf("%w: %.200q", sns.ErrCertURL, m.SigningCertURL)
	}
	verify := h.verifier.Verify
	if redelivery {
		verify = func(ctx context.Context, m *sns.Message) error {
			return h.verifier.VerifyMaxAge(ctx, m, RedeliveryMaxAge)
		}
	}
	if err := verify(ctx, m); err != nil {
		return "", err
	}

	switch m.Type {
	case sns.TypeNotification:
		return h.enqueue(ctx, m, o)
	case sns.TypeSubscriptionConfirmation:
		if err := h.verifier.Confirm(ctx, m); err != nil {
			return "", err
		}
		return "subscription_confirmed", nil
	default: // sns.TypeUnsubscribeConfirmation
		// Someone unsubscribed the relay; that is an operator's decision,
		// so it is logged, not undone.
		return "unsubscribe_confirmation", nil
	}
}

// RedeliveryMaxAge is how old the signed Timestamp of a redelivered SNS
// message may be: SQS keeps a dead-letter queue's messages for at most 14
// days, plus a day of slack.
const RedeliveryMaxAge = 15 * 24 * time.Hour

// Redeliver decides an SNS delivery that an authenticated operator hands
// over from the subscription's dead-letter queue (the admin API's
// POST /sns/redrive; body as read, at most the handler's MaxBodyBytes). It
// makes the checks of POST /sns — topic allow-list, certificate URL rule,
// signature, de-duplication by MessageId — and the same durable write
// before it returns 200, with two differences: only a Notification is
// taken (400 otherwise: nothing confirms a subscription this way), and the
// Timestamp may be up to RedeliveryMaxAge old instead of the configured
// maximum (a dead-lettered delivery is older than SNS's retries by
// definition; /sns keeps refusing it as a replay). It returns the status
// POST /sns would answer, its reason (stored, duplicate, bad_signature, …)
// and, for a refusal, the error. Logged, not counted in the /sns metrics.
func (h *Handler) Redeliver(ctx context.Context, body []byte) (code int, reason string, err error) {
	o := &outcome{typ: TypeInvalid}
	start := time.Now()
	defer func() {
		o.code, o.reason, o.err = code, reason, err
		h.logOutcome(o, time.Since(start), "sns redelivery")
	}()
	if int64(len(body)) > h.maxBody {
		err = fmt.Errorf("%w: body over %d bytes", errTooLarge, h.maxBody)
		code, reason = status(err)
		return code, reason, err
	}
	reason, err = h.decideBody(ctx, body, o, true)
	if err != nil {
		code, reason = status(err)
		return code, reason, err
	}
	return http.StatusOK, reason, o.err
}

// readBody reads at most maxBody bytes within bodyTimeout. Errors wrap
// errTooLarge, or errReadBody (the client's or the network's problem, a
// drip-fed body among them: SNS may retry). Once it returns, the request's
// connection counts as answered, not as a slow sender (LimitListener).
func (h *Handler) readBody(r *http.Request, rc *http.ResponseController) ([]byte, error) {
	// Not supported by every ResponseWriter (tests): then only the server's
	// ReadTimeout applies.
	deadline := rc.SetReadDeadline(time.Now().Add(h.bodyTimeout)) == nil
	body, err := h.readBodyLimited(r)
	if err != nil {
		// The deadline stays: the server's discarding the rest of the body
		// must not wait on a drip-fed client either.
		return nil, err
	}
	if deadline {
		// Cleared once read: the server's check for a client gone away
		// reads on past the body, and a deadline hit there would cancel
		// the request's context while the handler waits for its fsync.
		_ = rc.SetReadDeadline(time.Time{})
	}
	requestRead(r.Context())
	return body, nil
}

func (h *Handler) readBodyLimited(r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, fmt.Errorf("%w: content length %d over %d", errTooLarge, r.ContentLength, h.maxBody)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, h.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errReadBody, err)
	}
	if n > h.maxBody {
		return nil, fmt.Errorf("%w: body over %d bytes", errTooLarge, h.maxBody)
	}
	return buf.Bytes(), nil
}

// enqueue persists a verified Notification. An inner payload that is not a
// recognisable SES notification is stored all the same (Kind ""): the
// delivery is authentic, and the worker dead-letters it with a reason
// instead of SNS dropping it unseen.
func (h *Handler) enqueue(ctx context.Context, m *sns.Message, o *outcome) (string, error) {
	payload := []byte(m.Message)
	kind := ""
	n, perr := sesnotify.ParseBrief(payload)
	if perr == nil {
		kind, o.sesID = n.NotificationType, n.Mail.MessageID
	}
	o.kind = kind
	dup, err := h.put(ctx, spool.Entry{
		ID:         m.MessageId,
		Kind:       kind,
		TopicARN:   m.TopicArn,
		Payload:    payload,
		EnqueuedAt: h.now().UTC(),
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: %w", errPut, err)
	case dup:
		return "duplicate", nil
	case perr != nil:
		o.err = perr
		return "stored_unrecognised", nil
	}
	return "stored", nil
}

// The errors of the handler itself; the others come from sns and spool.
var (
	errTooLarge        = errors.New("inbound: body too large")
	errReadBody        = errors.New("inbound: reading body")
	errDraining        = errors.New("inbound: draining")
	errTopicNotAllowed = errors.New("inbound: topic not allowed")
	errPutTimeout      = errors.New("inbound: durable write still running")
	errTooManyWrites   = errors.New("inbound: too many durable writes in progress")
	errPut             = errors.New("inbound: durable write failed")
	errNotNotification = errors.New("inbound: not a notification")
)

// statuses is the one place an error becomes an answer: the first entry
// the error wraps gives the HTTP status and the reason (response body and
// log). 4xx only for deliveries that can never succeed; anything not listed
// is answered 503, so SNS retries.
var statuses = []struct {
	err    error
	code   int
	reason string
}{
	{errTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{errReadBody, http.StatusServiceUnavailable, "read_error"},
	{sns.ErrUnknownType, http.StatusBadRequest, "unknown_type"},
	{sns.ErrMalformed, http.StatusBadRequest, "malformed"},
	{errNotNotification, http.StatusBadRequest, "not_a_notification"},
	{errDraining, http.StatusServiceUnavailable, "draining"},
	{errTopicNotAllowed, http.StatusForbidden, "topic_not_allowed"},
	{sns.ErrCertURL, http.StatusForbidden, "cert_url_not_allowed"},
	{sns.ErrSignature, http.StatusForbidden, "bad_signature"},
	// Final: the signed Timestamp is too old (a replay) or in the future.
	{sns.ErrTimestamp, http.StatusForbidden, "stale_timestamp"},
	{sns.ErrCertLimited, http.StatusServiceUnavailable, "cert_fetch_limited"},
	{sns.ErrCertFetch, http.StatusServiceUnavailable, "cert_fetch_failed"},
	{sns.ErrSubscribeURL, http.StatusForbidden, "subscribe_url_not_allowed"},
	{sns.ErrConfirm, http.StatusServiceUnavailable, "confirm_failed"},
	{spool.ErrFull, http.StatusServiceUnavailable, "spool_full"},
	// Final: SNS would retry this id for an hour to the same answer.
	{spool.ErrInvalidID, http.StatusBadRequest, "invalid_message_id"},
	{errPutTimeout, http.StatusServiceUnavailable, "store_slow"},
	{errTooManyWrites, http.StatusServiceUnavailable, "store_slow"},
	{errPut, http.StatusServiceUnavailable, "store_failed"},
}

// status is the answer to a delivery refused with err.
func status(err error) (code int, reason string) {
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.code, s.reason
		}
	}
	return http.StatusServiceUnavailable, "unavailable"
}

// put runs the queue's durable write, waiting at most putTimeout. The write
// itself is not abandoned: it finishes (or fails) in the background and is
// counted until then, so a stalled disk shows up as 503s, not as held
// connections, and never as an acknowledged but unwritten notification.
func (h *Handler) put(ctx context.Context, e spool.Entry) (bool, error) {
	if h.pending.Add(1) > h.maxPending {
		h.pending.Add(-1)
		return false, errTooManyWrites
	}
	type result struct {
		dup    bool
		err    error
		panicv any
	}
	done := make(chan result, 1)
	go func() {
		defer h.pending.Add(-1)
		defer func() {
			if r := recover(); r != nil {
				done <- result{panicv: r}
			}
		}()
		dup, err := h.queue.Put(context.WithoutCancel(ctx), e)
		done <- result{dup: dup, err: err}
	}()
	t := time.NewTimer(h.putTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.panicv != nil {
			panic(r.panicv) // to the request's recovery: 500 and counted
		}
		return r.dup, r.err
	case <-t.C:
		return false, errPutTimeout
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// record counts and logs the outcome.
func (h *Handler) record(o *outcome, d time.Duration) {
	if h.metrics != nil {
		h.metrics.InboundRequests.WithLabelValues(o.typ, strconv.Itoa(o.code)).Inc()
		h.metrics.AckDuration.Observe(d.Seconds())
	}
	h.logOutcome(o, d, "sns delivery")
}

// logOutcome logs one decided delivery.
func (h *Handler) logOutcome(o *outcome, d time.Duration, msg string) {
	level := slog.LevelInfo
	switch {
	case o.code >= 500 && o.code != http.StatusServiceUnavailable:
		level = slog.LevelError
	case o.code >= 400, o.reason == "stored_unrecognised":
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !h.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.Int("code", o.code),
		slog.String("reason", o.reason),
		slog.String("type", o.typ),
		slog.String("sns_message_id", clip(o.snsID)),
		slog.String("topic", clip(o.topic)),
		slog.Duration("duration", d),
	}
	if o.sesID != "" {
		attrs = append(attrs, slog.String("ses_message_id", clip(o.sesID)))
	}
	if o.kind != "" {
		attrs = append(attrs, slog.String("kind", o.kind))
	}
	if o.err != nil {
		attrs = append(attrs, slog.String("err", o.err.Error()))
	}
	h.log.LogAttrs(ctx, level, msg, attrs...)
}

// clip bounds attacker-controlled strings in logs.
func clip(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
