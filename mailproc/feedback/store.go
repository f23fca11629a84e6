package feedback

import (
	"context"
	"fmt"
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

	// Load reads, in one statement (one consistent view), what the
	// Handler's checks need: every disabled alias, each alias's latest
	// complaint at or after since, the pauses ending after now and, when
	// day is not "", the day's send counts.
	Load(ctx context.Context, now, since time.Time, day string) (State, error)

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

// State is the part of the feedback state the per-mail checks read
// (Store.Load). The Handler keeps it in memory and decides expiry — of a
// pause, of the complaint window, of the day — when it checks.
type State struct {
	Disabled   map[string]bool      // aliases disabled in the Store
	Complained map[string]time.Time // alias → its latest complaint at or after since
	Paused     map[string]time.Time // address → end of its pause (after now)
	Sends      map[string]int       // address → mails sent on day
}

// NewState returns an empty State, its maps made.
func NewState() State {
	return State{Disabled: map[string]bool{}, Complained: map[string]time.Time{}, Paused: map[string]time.Time{}, Sends: map[string]int{}}
}

// Kinds of the rows of a Store's Load query (its first column).
const (
	LoadDisabled  = 0
	LoadComplaint = 1
	LoadPaused    = 2
	LoadSends     = 3
)

// Add puts one row of a Load query in s: an alias (LoadDisabled), an
// alias and its latest complaint (LoadComplaint), an address and its
// pause's end (LoadPaused), an address and its count (LoadSends).
func (s State) Add(kind int, key string, t time.Time, n int) error {
	switch kind {
	case LoadDisabled:
		s.Disabled[key] = true
	case LoadComplaint:
		s.Complained[key] = t
	case LoadPaused:
		s.Paused[key] = t
	case LoadSends:
		s.Sends[key] = n
	default:
		return fmt.Errorf("feedback state: row of unknown kind %d", kind)
	}
	return nil
}
