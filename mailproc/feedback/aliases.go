package feedback

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// AliasStates changes a managed alias's state (implemented by
// *aliases.Manager). It answers aliases.ErrReadOnly for an alias of the
// alias file and aliases.ErrNotFound for an address it does not hold.
type AliasStates interface {
	SetState(ctx context.Context, address string, s aliases.State) (aliases.Alias, error)
}

// Where a complaint-driven disable was recorded.
const (
	DisabledInAliasStore    = "alias_store"    // the managed alias's state
	DisabledInFeedbackStore = "feedback_store" // the feedback state (file aliases)
)

// disable disables alias after complaints: a managed alias through
// AliasStates (so the alias API shows it and `alias enable` lifts it), any
// other in the feedback Store.
func (h *Handler) disable(ctx context.Context, alias string, at time.Time, reason string) (string, error) {
	if h.o.AliasStates != nil {
		_, err := h.o.AliasStates.SetState(ctx, alias, aliases.StateDisabled)
		switch {
		case err == nil:
			return DisabledInAliasStore, nil
		case errors.Is(err, aliases.ErrReadOnly), errors.Is(err, aliases.ErrNotFound):
			// The alias file's (read-only) or a catch-all's: below.
		default:
			return "", err
		}
	}
	if err := h.o.Store.DisableAlias(ctx, alias, at, reason); err != nil {
		return "", err
	}
	h.aliasDisabled(alias, true)
	return DisabledInFeedbackStore, nil
}

// AliasManager is the alias API's backend (*aliases.Manager; the admin
// API's AliasAdmin).
type AliasManager interface {
	List(ctx context.Context) ([]aliases.Alias, error)
	Get(ctx context.Context, address string) (aliases.Alias, error)
	Create(ctx context.Context, to []string, domain, address, description string) (aliases.Alias, error)
	SetState(ctx context.Context, address string, s aliases.State) (aliases.Alias, error)
	Delete(ctx context.Context, address string) error
}

// AliasAdmin is an AliasManager that also knows the disables the feedback
// state holds (aliases of the alias file disabled after complaints):
// such an alias is shown disabled, and enabling it lifts that disable —
// for a managed alias too (its state becomes enabled as well), for a file
// alias it is the one change the API makes.
type AliasAdmin struct {
	m AliasManager
	h *Handler
}

// NewAliasAdmin wraps m with h's feedback state.
func NewAliasAdmin(m AliasManager, h *Handler) *AliasAdmin { return &AliasAdmin{m: m, h: h} }

// List lists m's aliases, with the feedback state's disables.
func (a *AliasAdmin) List(ctx context.Context) ([]aliases.Alias, error) {
	l, err := a.m.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range l {
		if l[i], err = a.withFeedback(ctx, l[i]); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Get shows one alias, with the feedback state's disable.
func (a *AliasAdmin) Get(ctx context.Context, address string) (aliases.Alias, error) {
	al, err := a.m.Get(ctx, address)
	if err != nil {
		return al, err
	}
	return a.withFeedback(ctx, al)
}

// Create creates a managed alias.
func (a *AliasAdmin) Create(ctx context.Context, to []string, domain, address, description string) (aliases.Alias, error) {
	return a.m.Create(ctx, to, domain, address, description)
}

// SetState changes a managed alias's state. Enabling lifts a disable of
// the feedback state first; for an alias of the alias file, that is all
// it does (200 when there was one, ErrReadOnly when there was none).
func (a *AliasAdmin) SetState(ctx context.Context, address string, s aliases.State) (aliases.Alias, error) {
	key := aliases.CanonicalAddress(address)
	lifted := false
	if s == aliases.StateEnabled {
		ok, err := a.h.o.Store.EnableAlias(ctx, key)
		if err != nil {
			return aliases.Alias{}, err
		}
		a.h.aliasDisabled(key, false)
		if ok {
			lifted = true
			a.h.o.Logger.Info("alias complaint disable lifted", "alias", key)
		}
	}
	al, err := a.m.SetState(ctx, key, s)
	if errors.Is(err, aliases.ErrReadOnly) && lifted {
		return a.Get(ctx, key)
	}
	if err != nil {
		return al, err
	}
	return a.withFeedback(ctx, al)
}

// Delete removes a managed alias (and any disable the feedback state
// holds for its address).
func (a *AliasAdmin) Delete(ctx context.Context, address string) error {
	if err := a.m.Delete(ctx, address); err != nil {
		return err
	}
	key := aliases.CanonicalAddress(address)
	if _, err := a.h.o.Store.EnableAlias(ctx, key); err != nil {
		return err
	}
	a.h.aliasDisabled(key, false)
	return nil
}

func (a *AliasAdmin) withFeedback(ctx context.Context, al aliases.Alias) (aliases.Alias, error) {
	if al.State == aliases.StateDisabled {
		return al, nil
	}
	d, err := a.h.o.Store.AliasDisabled(ctx, al.Address)
	if err != nil {
		return al, err
	}
	if d {
		al.State = aliases.StateDisabled
	}
	return al, nil
}

// PausedDestinations lists the destinations paused now, soonest end last.
func (h *Handler) PausedDestinations(ctx context.Context) ([]Pause, error) {
	return h.o.Store.ListPaused(ctx, h.o.Now())
}

// Destination returns address's pause; ok is false when it is not paused.
func (h *Handler) Destination(ctx context.Context, address string) (p Pause, ok bool, err error) {
	return h.o.Store.Paused(ctx, strings.ToLower(strings.TrimSpace(address)), h.o.Now())
}

// Unpause ends address's pause at once; ok is false when it had none.
func (h *Handler) Unpause(ctx context.Context, address string) (bool, error) {
	address = strings.ToLower(strings.TrimSpace(address))
	ok, err := h.o.Store.Unpause(ctx, address)
	if err == nil {
		h.unpaused(address)
	}
	if err == nil && ok {
		h.o.Logger.Info("destination unpaused", "address", address)
	}
	return ok, err
}
