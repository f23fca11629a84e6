package relay

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/pgstore"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
)

// StateDBName is the embedded state database's file, beside the spool
// directory.
const StateDBName = "mailrelay-state.db"

// feedback opens the feedback state — in the shared database with
// --database-url (every replica sees every pause, complaint and daily
// count), else embedded (SQLite beside the spool) — and returns the
// handler of SES feedback; the embedded database is closed when Serve
// returns. The per-mail checks read the state from memory (refreshed by
// Handler.Run, started here, every --feedback-refresh/2).
func (r *run) feedback(ctx context.Context) (*feedback.Handler, error) {
	cfg := r.cfg.Feedback
	var store feedback.Store
	if r.db != nil {
		store = pgstore.New(r.db) // its tables come with the queue's migrations
	} else {
		path := filepath.Join(filepath.Dir(filepath.Clean(r.cfg.SpoolDir)), StateDBName)
		s, err := sqlitestore.Open(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("feedback state: %w", err)
		}
		r.onStop(func() { _ = s.Close() })
		store = s
	}
	h := feedback.NewHandler(feedback.Options{
		Store:             store,
		Aliases:           r.aliases.resolver,
		AliasStates:       r.aliases.manager, // complaint disables of managed aliases
		PauseHard:         cfg.BouncePauseHard,
		PauseSoft:         cfg.BouncePauseSoft,
		ComplaintsDisable: cfg.ComplaintsDisable,
		DailyCap:          cfg.DailyCapPerDestination,
		Refresh:           cfg.Refresh,
		Metrics:           feedback.NewMetrics(r.m.Registry),
		Logger:            r.log.With("component", "feedback"),
	})
	// Keep the checks' view fresh and flush the daily counts; stopped (a
	// last flush) after the workers and before the store closes.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); h.Run(bg) }()
	r.onStop(func() { stop(); <-done })
	return h, nil
}

// observeFeedback keeps the paused-destination and alias-state gauges
// current until the relay stops.
func (r *run) observeFeedback(ctx context.Context) {
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.fb.Observe(bg, feedback.NewStateMetrics(r.m.Registry), feedback.NewAliasAdmin(r.aliases.manager, r.fb))
	}()
	r.onStop(func() { stop(); <-done })
}
