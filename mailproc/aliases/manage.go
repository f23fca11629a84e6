package aliases

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ManagedStore is the store of managed aliases (mailproc/aliasdb). Errors
// wrap ErrNotFound or ErrExists where they say so.
type ManagedStore interface {
	Store
	// Create stores a new alias; ErrExists if the address is taken.
	Create(ctx context.Context, a Alias) error
	// List returns every managed alias, sorted by address.
	List(ctx context.Context) ([]Alias, error)
	// SetState changes an alias's state and returns it.
	SetState(ctx context.Context, address string, s State) (Alias, error)
	// Delete removes an alias.
	Delete(ctx context.Context, address string) error
}

// Manager creates, shows and changes aliases for the admin API: managed
// ones in the store, the alias file's read-only (a change is ErrReadOnly).
type Manager struct {
	file     func() *Table
	store    ManagedStore
	resolver *Combined // emptied after a change, so this replica sees it at once; may be nil
	now      func() time.Time
}

// NewManager returns a Manager over the file table file(), store, and the
// resolver whose cache a change empties (nil: none).
func NewManager(file func() *Table, store ManagedStore, resolver *Combined) *Manager {
	return &Manager{file: file, store: store, resolver: resolver, now: time.Now}
}

// List returns the alias file's exact aliases, then the managed ones.
func (m *Manager) List(ctx context.Context) ([]Alias, error) {
	managed, err := m.store.List(ctx)
	if err != nil {
		return nil, err
	}
	return append(m.file().FileAliases(), managed...), nil
}

// Get returns the alias with address, from the file or the store.
func (m *Manager) Get(ctx context.Context, address string) (Alias, error) {
	key := CanonicalAddress(address)
	if a, ok := m.file().FileAlias(key); ok {
		return a, nil
	}
	return m.store.Get(ctx, key)
}

// Create validates and stores a new managed alias (see Table.NewAlias for
// the rules): address "" gets a random local part on domain ("" the first
// relay domain). An address the alias file defines is ErrExists.
func (m *Manager) Create(ctx context.Context, to []string, domain, address, description string) (Alias, error) {
	t := m.file()
	for try := 0; ; try++ {
		a, err := t.NewAlias(address, domain, to, description, m.now())
		if err != nil {
			return Alias{}, err
		}
		if _, ok := t.FileAlias(a.Address); ok {
			return Alias{}, fmt.Errorf("%w: %s is defined in the alias file", ErrExists, a.Address)
		}
		err = m.store.Create(ctx, a)
		if errors.Is(err, ErrExists) && address == "" && try < 3 {
			continue // a random address taken: 80 bits make this all but impossible
		}
		if err != nil {
			return Alias{}, err
		}
		m.changed()
		return a, nil
	}
}

// SetState changes a managed alias's state.
func (m *Manager) SetState(ctx context.Context, address string, s State) (Alias, error) {
	if !s.Valid() {
		return Alias{}, fmt.Errorf("%w: state %q (want %s, %s or %s)", ErrInvalid, s, StateEnabled, StateDisabled, StateBlockPromotional)
	}
	key := CanonicalAddress(address)
	if err := m.writable(key); err != nil {
		return Alias{}, err
	}
	a, err := m.store.SetState(ctx, key, s)
	if err != nil {
		return Alias{}, err
	}
	m.changed()
	return a, nil
}

// Delete removes a managed alias.
func (m *Manager) Delete(ctx context.Context, address string) error {
	key := CanonicalAddress(address)
	if err := m.writable(key); err != nil {
		return err
	}
	if err := m.store.Delete(ctx, key); err != nil {
		return err
	}
	m.changed()
	return nil
}

// writable refuses an address of the alias file (or a catch-all).
func (m *Manager) writable(key string) error {
	t := m.file()
	if _, ok := t.FileAlias(key); ok {
		return fmt.Errorf("%w (%s)", ErrReadOnly, key)
	}
	if _, ok := t.catchAll[strings.TrimPrefix(key, "@")]; ok && strings.HasPrefix(key, "@") {
		return fmt.Errorf("%w (the catch-all %s)", ErrReadOnly, key)
	}
	return nil
}

func (m *Manager) changed() {
	if m.resolver != nil {
		m.resolver.Invalidate()
	}
}
