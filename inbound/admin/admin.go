// Package admin is the operator's API: list the dead letters and redrive
// them into the spool once the cause is fixed, hand over mail objects the
// relay never heard of (POST /reconcile, by reference), and redeliver SNS
// messages from the subscription's dead-letter queue (POST /sns/redrive);
// and Go's profiles of the running relay (GET /debug/pprof/...).
//
// It is served on its own listener and locked: every request carries the
// bearer token (RELAY_ADMIN_TOKEN), or, when none is set, the listener is
// on loopback and every request names a loopback Host (DNS rebinding);
// browser requests from another site are refused (CSRF); requests and
// answers are JSON, bodies bounded. The CLI in cmd is its client (Client).
package admin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// Queue is what the admin API needs of the spool (implemented by
// *spool.Spool).
type Queue interface {
	DeadLetters(limit int) ([]spool.DeadLetter, error)
	Redrive(ids ...string) (int, error)
	Put(ctx context.Context, e spool.Entry) (duplicate bool, err error)
}

// SNSIntake decides an SNS delivery handed over from the dead-letter queue
// (implemented by *inbound.Handler: the checks and durable write of
// POST /sns).
type SNSIntake interface {
	Redeliver(ctx context.Context, body []byte) (code int, reason string, err error)
}

// Config configures the admin API.
type Config struct {
	// Queue is the spool. Required.
	Queue Queue
	// Token is the bearer token every request must carry. Empty is
	// allowed only with Loopback.
	Token string
	// Loopback says the listener is bound to a loopback address. Without
	// a token, requests must then name a loopback Host.
	Loopback bool
	// Buckets are the S3 buckets SES stores mail in: POST /reconcile
	// takes objects in these only (403 for any when empty).
	Buckets []string
	// TopicARNs are the relay's SNS topics; the first is written into
	// reconciled notifications, and a request may name another of them.
	TopicARNs []string
	// Domains returns the relay's domains (the alias table's): reconcile
	// takes recipients on them only.
	Domains func() []string
	// SNS, if set, serves POST /sns/redrive.
	SNS SNSIntake
	// Aliases, if set, serves the alias endpoints (aliases.go).
	Aliases AliasAdmin
	// Destinations, if set, serves the destination endpoints
	// (destinations.go).
	Destinations DestinationAdmin
	// SNSMaxBodyBytes caps POST /sns/redrive's body (default
	// inbound.DefaultMaxBodyBytes); other bodies are capped at
	// DefaultMaxBodyBytes.
	SNSMaxBodyBytes int64
	// RetryAfter is sent with 503 answers (default inbound.DefaultRetryAfter).
	RetryAfter time.Duration
	// Logger logs what was done and what was refused (never the token).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// api is the admin API's http.Handler.
type api struct {
	cfg        Config
	token      []byte // SHA-256 of the token; nil without one
	mux        *http.ServeMux
	limits     map[string]int64 // body limit by route pattern
	log        *slog.Logger
	now        func() time.Time
	retryAfter string
}

// New returns the admin API, or an error when cfg would leave it open: no
// token on a listener that is not loopback, or a token that cannot be sent
// in a header.
func New(cfg Config) (http.Handler, error) {
	if cfg.Queue == nil {
		return nil, errors.New("admin: no queue")
	}
	a := &api{cfg: cfg, mux: http.NewServeMux(), limits: map[string]int64{}, log: cfg.Logger, now: cfg.Now}
	if err := CheckToken(cfg.Token); err != nil {
		return nil, err
	}
	switch {
	case cfg.Token != "":
		h := sha256.Sum256([]byte(cfg.Token))
		a.token = h[:]
	case !cfg.Loopback:
		return nil, errors.New("admin: no token on a listener that is not loopback: set RELAY_ADMIN_TOKEN or listen on 127.0.0.1")
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.cfg.Domains == nil {
		a.cfg.Domains = func() []string { return nil }
	}
	if a.cfg.SNSMaxBodyBytes <= 0 {
		a.cfg.SNSMaxBodyBytes = inbound.DefaultMaxBodyBytes
	}
	ra := cfg.RetryAfter
	if ra <= 0 {
		ra = inbound.DefaultRetryAfter
	}
	a.retryAfter = strconv.FormatInt(int64((ra+time.Second-1)/time.Second), 10)

	a.handle("GET /deadletters", 0, a.listDeadLetters)
	a.handle("POST /deadletters/redrive", 0, a.redriveDeadLetters)
	a.handle("POST /reconcile", 0, a.reconcile)
	if cfg.SNS != nil {
		a.handle("POST "+SNSRedrivePath, a.cfg.SNSMaxBodyBytes, a.redriveSNS)
	}
	if cfg.Aliases != nil {
		// Behind the same guard; bodies capped at DefaultMaxBodyBytes by
		// the guard and at MaxAliasRequestBytes by the handlers.
		RegisterAliases(a.mux, cfg.Aliases, a.log)
	}
	if cfg.Destinations != nil {
		RegisterDestinations(a.mux, cfg.Destinations, a.log)
	}
	// Go's profiles (net/http/pprof), behind the same lock: where the CPU,
	// memory and goroutines go in a running relay, e.g.
	// curl -H "Authorization: Bearer $RELAY_ADMIN_TOKEN" -o cpu.pprof \
	//   http://ADMIN/debug/pprof/profile?seconds=30; go tool pprof cpu.pprof
	// The answers are pprof's own formats, not JSON.
	a.handle("GET /debug/pprof/", 0, pprof.Index)
	a.handle("GET /debug/pprof/profile", 0, pprof.Profile)
	a.handle("GET /debug/pprof/trace", 0, pprof.Trace)
	a.handle("GET /debug/pprof/symbol", 0, pprof.Symbol)
	return a, nil
}

// MinTokenBytes is the shortest token accepted.
const MinTokenBytes = 16

// CheckToken says what is wrong with a token, if anything: empty is fine
// (no token), else at least MinTokenBytes of visible ASCII.
func CheckToken(token string) error {
	if token == "" {
		return nil
	}
	if len(token) < MinTokenBytes {
		return fmt.Errorf("admin token: %d characters, want at least %d (e.g. openssl rand -hex 32)", len(token), MinTokenBytes)
	}
	for _, c := range []byte(token) {
		if c <= ' ' || c >= 0x7f {
			return errors.New("admin token: only visible ASCII characters (no spaces or control characters), e.g. openssl rand -hex 32")
		}
	}
	return nil
}

// handle registers a route; max caps its body (0: DefaultMaxBodyBytes).
func (a *api) handle(pattern string, max int64, h http.HandlerFunc) {
	if max <= 0 {
		max = DefaultMaxBodyBytes
	}
	a.limits[pattern] = max
	a.mux.HandleFunc(pattern, h)
}

// ServeHTTP applies the guard, then routes: unknown paths 404 and wrong
// methods 405 (with Allow), in JSON like every answer.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.guard(w, r) {
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		rec := &statusRecorder{h: w.Header()}
		h.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusNotFound
		}
		writeError(w, code, fmt.Sprintf("%s %s: %s", r.Method, clip(r.URL.Path), strings.ToLower(http.StatusText(code))))
		return
	}
	if !checkBody(w, r, a.limits[pattern]) {
		return
	}
	// Through the mux, not h: only the mux's ServeHTTP sets the path's
	// wildcards (r.PathValue).
	a.mux.ServeHTTP(w, r)
}

// Item is one dead letter as the API shows it (payload omitted: it can be large).
type Item struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind,omitempty"`
	Reason     string    `json:"reason"`
	DeadAt     time.Time `json:"dead_at"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	Attempts   int       `json:"attempts"`
	Bytes      int       `json:"bytes"`
}

// RedriveRequest names the ids to redrive; All redrives everything.
type RedriveRequest struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// RedriveResponse says how many entries went back to the spool, and which
// of the named ids were not dead letters (the others were redriven).
type RedriveResponse struct {
	Redriven int    `json:"redriven"`
	NotFound string `json:"not_found,omitempty"`
}

// maxRedriveIDs bounds the ids of one redrive request.
const maxRedriveIDs = 10000

func (a *api) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: want a positive number")
			return
		}
		limit = n
	}
	dls, err := a.cfg.Queue.DeadLetters(limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	items := make([]Item, 0, len(dls))
	for _, d := range dls {
		items = append(items, Item{ID: d.ID, Kind: d.Kind, Reason: d.Reason, DeadAt: d.DeadAt,
			EnqueuedAt: d.EnqueuedAt, Attempts: d.Attempts, Bytes: len(d.Payload)})
	}
	writeJSON(w, http.StatusOK, items)
}

func (a *api) redriveDeadLetters(w http.ResponseWriter, r *http.Request) {
	var req RedriveRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.All == (len(req.IDs) > 0) {
		writeError(w, http.StatusBadRequest, "give either ids or all, not both or neither")
		return
	}
	if len(req.IDs) > maxRedriveIDs {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("at most %d ids at once", maxRedriveIDs))
		return
	}
	n, err := a.cfg.Queue.Redrive(req.IDs...)
	switch {
	case errors.Is(err, spool.ErrNotFound) && n > 0:
		// Partial: the known ids went back; say which were unknown.
		a.log.Info("dead letters redriven", "count", n, "not_found", err.Error())
		writeJSON(w, http.StatusOK, RedriveResponse{Redriven: n, NotFound: err.Error()})
		return
	case errors.Is(err, spool.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.log.Info("dead letters redriven", "count", n, "ids", req.IDs)
	writeJSON(w, http.StatusOK, RedriveResponse{Redriven: n})
}
