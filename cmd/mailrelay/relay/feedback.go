package relay

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
)

// StateDBName is the embedded state database's file, beside the spool
// directory.
const StateDBName = "mailrelay-state.db"

// feedback opens the embedded feedback state (SQLite beside the spool) and
// returns the handler of SES feedback; the database is closed when Serve
// returns.
func (r *run) feedback(ctx context.Context) (*feedback.Handler, error) {
	cfg := r.cfg.Feedback
	path := filepath.Join(filepath.Dir(filepath.Clean(r.cfg.SpoolDir)), StateDBName)
	store, err := sqlitestore.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("feedback state: %w", err)
	}
	r.onStop(func() { _ = store.Close() })
	return feedback.NewHandler(feedback.Options{
		Store:             store,
		Aliases:           r.aliases.resolver,
		AliasStates:       r.aliases.manager, // complaint disables of managed aliases
		PauseHard:         cfg.BouncePauseHard,
		PauseSoft:         cfg.BouncePauseSoft,
		ComplaintsDisable: cfg.ComplaintsDisable,
		DailyCap:          cfg.DailyCapPerDestination,
		Metrics:           feedback.NewMetrics(r.m.Registry),
		Logger:            r.log.With("component", "feedback"),
	}), nil
}
