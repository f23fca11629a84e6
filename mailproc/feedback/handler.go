package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Defaults of Options.
const (
	DefaultPauseHard         = 720 * time.Hour
	DefaultPauseSoft         = 24 * time.Hour
	DefaultComplaintsDisable = 3
	ComplaintWindow          = 30 * 24 * time.Hour
)

// Resolver maps an alias to its destinations (mailproc's Resolver).
type Resolver interface {
	Resolve(ctx context.Context, address string) (aliases.Route, error)
}

// Options configure NewHandler.
type Options struct {
	Store   Store
	Aliases Resolver
	// AliasStates, if set, is where a complaint-driven disable goes for a
	// managed alias (its state becomes disabled, as `mailrelay alias
	// disable` does); aliases it does not hold — the alias file's, which
	// are read-only, or a catch-all's — are disabled in Store instead.
	AliasStates AliasStates
	// PauseHard and PauseSoft are how long a permanent and a transient
	// (or undetermined) bounce pause a destination.
	PauseHard, PauseSoft time.Duration
	// ComplaintsDisable complaints within ComplaintWindow disable an alias
	// (0: DefaultComplaintsDisable; negative: never).
	ComplaintsDisable int
	// DailyCap is the most mails a destination gets a day (0: no cap).
	DailyCap int
	// Refresh bounds how old a view of the Store a check may decide on
	// (0: DefaultRefresh): what another replica writes to a shared Store
	// takes effect here within it (view.go).
	Refresh time.Duration
	Metrics *Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler applies feedback to the Store and answers the pool.
type Handler struct {
	o Options
	c cache // the view the checks read (view.go)
}

// NewHandler returns a Handler.
func NewHandler(o Options) *Handler {
	if o.PauseHard <= 0 {
		o.PauseHard = DefaultPauseHard
	}
	if o.PauseSoft <= 0 {
		o.PauseSoft = DefaultPauseSoft
	}
	if o.ComplaintsDisable == 0 {
		o.ComplaintsDisable = DefaultComplaintsDisable
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	return &Handler{o: o}
}

// Actions counted in mailrelay_feedback_total.
const (
	ActionPaused    = "paused"    // a bounce paused a destination
	ActionComplaint = "complaint" // a complaint was counted against an alias
	ActionDisabled  = "disabled"  // ... and disabled it
	ActionIgnored   = "ignored"   // about no alias or destination of ours
	ActionCounted   = "counted"   // a delivery
)

// Record applies one feedback notification. A bounce pauses the bounced
// recipients that are destinations of the alias that sent the mail (its
// envelope sender); a complaint counts against the alias in the mail's
// From and disables it at the threshold; anything about an address the
// relay does not know changes nothing. Errors: malformed (permanent) or
// the store's (transient).
func (h *Handler) Record(ctx context.Context, payload []byte) error {
	e, err := Parse(payload)
	if err != nil {
		return err
	}
	action, err := h.apply(ctx, e)
	if err != nil {
		return failure.Transient(failure.ReasonFeedbackState, err)
	}
	if m := h.o.Metrics; m != nil {
		m.Feedback.WithLabelValues(e.Type, action).Inc()
	}
	h.o.Logger.Info("ses feedback", "type", e.Type, "action", action, "ses_message_id", e.Mail.MessageID)
	return nil
}

func (h *Handler) apply(ctx context.Context, e *Event) (string, error) {
	now := h.o.Now()
	switch e.Type {
	case TypeBounce:
		alias := address(e.Mail.Source)
		route, ok, err := h.resolve(ctx, alias)
		if err != nil || !ok {
			return ActionIgnored, err
		}
		d, kind := h.o.PauseSoft, e.Bounce.BounceType
		if e.Bounce.Permanent() {
			d = h.o.PauseHard
		}
		action := ActionIgnored
		for _, r := range e.Bounce.BouncedRecipients {
			dest := strings.ToLower(r.EmailAddress)
			if !contains(route.ForwardTo, dest) {
				continue
			}
			reason := strings.TrimSpace(e.Bounce.BounceSubType + " " + r.DiagnosticCode)
			if err := h.o.Store.Pause(ctx, Pause{Address: dest, Until: now.Add(d), Kind: kind, Since: now, Reason: truncate(reason, 256)}); err != nil {
				return "", err
			}
			h.paused(dest, now.Add(d))
			action = ActionPaused
		}
		return action, nil
	case TypeComplaint:
		var from string
		if len(e.Mail.CommonHeaders.From) > 0 {
			from = address(e.Mail.CommonHeaders.From[0])
		}
		_, ok, err := h.resolve(ctx, from)
		if err != nil || !ok {
			return ActionIgnored, err
		}
		id := e.Complaint.FeedbackID
		if id == "" {
			id = e.Mail.MessageID
		}
		n, err := h.o.Store.AddComplaint(ctx, from, id, now, now.Add(-ComplaintWindow))
		if err != nil {
			return "", err
		}
		h.complained(from, now)
		if h.o.ComplaintsDisable > 0 && n >= h.o.ComplaintsDisable {
			where, err := h.disable(ctx, from, now, fmt.Sprintf("%d complaints within %s", n, ComplaintWindow))
			if err != nil {
				return "", err
			}
			h.o.Logger.Warn("alias disabled after complaints", "alias", from, "complaints", n, "in", where)
			return ActionDisabled, nil
		}
		return ActionComplaint, nil
	}
	return ActionCounted, nil
}

// resolve returns alias's route; ok is false for an address that is no
// alias of ours.
func (h *Handler) resolve(ctx context.Context, alias string) (aliases.Route, bool, error) {
	if alias == "" {
		return aliases.Route{}, false, nil
	}
	r, err := h.o.Aliases.Resolve(ctx, alias)
	switch {
	case errors.Is(err, aliases.ErrNotOurDomain), errors.Is(err, aliases.ErrUnknownAlias), errors.Is(err, aliases.ErrInvalidRecipient):
		return aliases.Route{}, false, nil
	case err != nil:
		return aliases.Route{}, false, err
	}
	return r, true, nil
}

// address is the lower-cased addr-spec of an address header value, or "".
func address(s string) string {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(a.Address)
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if strings.EqualFold(l, s) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Metrics are the feedback metrics.
type Metrics struct {
	Feedback *prometheus.CounterVec // mailrelay_feedback_total{type, action}
	// RefreshFailures is mailrelay_feedback_refresh_failures_total: Run's
	// reloads of the state (and flushes of the daily counts) that failed.
	RefreshFailures prometheus.Counter
}

// NewMetrics creates the feedback metrics on reg, every series at 0.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Feedback: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailrelay_feedback_total",
		Help: "SES feedback notifications handled, by type (Bounce, Complaint, Delivery) and action (paused, complaint, disabled, ignored, counted).",
	}, []string{"type", "action"})}
	telemetry.Register(reg, &m.Feedback)
	m.RefreshFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mailrelay_feedback_refresh_failures_total",
		Help: "Reloads of the SES feedback state (and flushes of the daily send counts) that failed; checks use the last state until it is --feedback-refresh old, then wait for the store.",
	})
	telemetry.Register(reg, &m.RefreshFailures)
	for _, t := range []string{TypeBounce, TypeComplaint, TypeDelivery} {
		m.Feedback.WithLabelValues(t, ActionIgnored)
	}
	m.Feedback.WithLabelValues(TypeBounce, ActionPaused)
	m.Feedback.WithLabelValues(TypeComplaint, ActionComplaint)
	m.Feedback.WithLabelValues(TypeComplaint, ActionDisabled)
	m.Feedback.WithLabelValues(TypeDelivery, ActionCounted)
	return m
}
