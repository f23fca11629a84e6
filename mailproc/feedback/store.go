package feedback

import (
	"context"
	"time"
)

// Store keeps the feedback state. The embedded implementation is
// sqlitestore (SQLite in the data directory); a PostgreSQL one shares it
// among replicas. Addresses and aliases are stored lower-cased by the
// Handler.
type Store interface {
	// Pause pauses forwarding to address until until, or keeps the
	// pause it has if that one ends later.
	Pause(ctx context.Context, p Pause) error
	// Paused returns address's pause (ok false when none ends after now).
	Paused(ctx context.Context, address string, now time.Time) (p Pause, ok bool, err error)
	// Unpause ends address's pause; ok is false when it had none.
	Unpause(ctx context.Context, address string) (ok bool, err error)
	// ListPaused lists the pauses ending after now, soonest last.
	ListPaused(ctx context.Context, now time.Time) ([]Pause, error)

	// AddComplaint records a complaint about alias (once per feedbackID)
	// and returns how many it had at or after since, this one included.
	AddComplaint(ctx context.Context, alias, feedbackID string, at, since time.Time) (int, error)
	// Complaints counts alias's complaints at or after since.
	Complaints(ctx context.Context, alias string, since time.Time) (int, error)
	// DisableAlias disables alias (keeping the first time it was).
	DisableAlias(ctx context.Context, alias string, at time.Time, reason string) error
	// AliasDisabled reports whether alias is disabled.
	AliasDisabled(ctx context.Context, alias string) (bool, error)
	// EnableAlias lifts a disable; ok is false when there was none.
	EnableAlias(ctx context.Context, alias string) (ok bool, err error)

	// AddSends counts n mails sent to address on day (YYYY-MM-DD, UTC)
	// and returns the day's count.
	AddSends(ctx context.Context, address, day string, n int) (int, error)
	// Sends is address's count on day.
	Sends(ctx context.Context, address, day string) (int, error)

	Close() error
}

// Pause is a paused destination.
type Pause struct {
	Address string
	Until   time.Time
	Kind    string // BouncePermanent, BounceTransient, BounceUndetermined
	Since   time.Time
	Reason  string // the bounce's sub-type and diagnostic
}
