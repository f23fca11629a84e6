package aliases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Store is what Combined needs of the managed alias store
// (mailproc/aliasdb).
type Store interface {
	// Get returns the managed alias with the canonical address, or an
	// error wrapping ErrNotFound.
	Get(ctx context.Context, address string) (Alias, error)
	// Version is a number that changes with every change of an alias's
	// address, destinations or state (not with its counters), on every
	// replica sharing the store.
	Version(ctx context.Context) (int64, error)
}

// Defaults of CombinedOptions.
const (
	DefaultCacheTTL      = 30 * time.Second
	DefaultNegativeTTL   = 10 * time.Second
	DefaultLookupTimeout = time.Second
	DefaultPollInterval  = 500 * time.Millisecond
	DefaultCacheEntries  = 100_000
)

// CombinedOptions tune Combined; zero values take the defaults.
type CombinedOptions struct {
	CacheTTL      time.Duration // how long a found alias is served from the cache
	NegativeTTL   time.Duration // how long "no such managed alias" is
	LookupTimeout time.Duration // bound of one store lookup
	PollInterval  time.Duration // how often Run asks the store's Version
	MaxEntries    int           // the cache is emptied when it would grow past this
	Logger        *slog.Logger
	Now           func() time.Time
}

// Combined is the relay's Resolver: the alias file's exact aliases first,
// then the store's managed aliases, then the file's catch-alls. Store
// lookups go through a cache (found and not-found entries both, with a
// short TTL); Run empties it within PollInterval of a change made on any
// replica. When the store fails or is slow, an expired cache entry is
// served rather than nothing; without one, Resolve returns the store's
// error (a transient alias_lookup failure: the mail is retried).
type Combined struct {
	file  func() *Table
	store Store
	opt   CombinedOptions
	log   *slog.Logger

	mu      sync.Mutex
	cache   map[string]cached
	gen     uint64 // bumped by Invalidate: lookups begun before do not fill the cache
	version int64
	polled  bool
}

type cached struct {
	alias Alias
	found bool
	until time.Time
}

var _ Resolver = (*Combined)(nil)

// NewCombined returns a resolver over the file table file() (read on each
// lookup, so reloads apply at once) and store (nil: file aliases only).
func NewCombined(file func() *Table, store Store, opt CombinedOptions) *Combined {
	if opt.CacheTTL <= 0 {
		opt.CacheTTL = DefaultCacheTTL
	}
	if opt.NegativeTTL <= 0 {
		opt.NegativeTTL = DefaultNegativeTTL
	}
	if opt.LookupTimeout <= 0 {
		opt.LookupTimeout = DefaultLookupTimeout
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = DefaultPollInterval
	}
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = DefaultCacheEntries
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Combined{file: file, store: store, opt: opt, log: log, cache: map[string]cached{}}
}

// Table returns the alias file's current table.
func (c *Combined) Table() *Table { return c.file() }

// Resolve returns the route for a received address; see Table.Resolve for
// the address rules and errors. A managed alias's Route carries its State.
func (c *Combined) Resolve(ctx context.Context, address string) (Route, error) {
	t := c.file()
	alias, domain, err := t.normalise(ctx, address)
	if err != nil {
		return Route{}, err
	}
	if fw, ok := t.exact[alias]; ok {
		return Route{Alias: alias, ForwardTo: slices.Clone(fw)}, nil
	}
	if c.store != nil {
		a, found, err := c.lookup(ctx, alias)
		if err != nil {
			return Route{}, fmt.Errorf("managed alias %q: %w", alias, err)
		}
		if found {
			return Route{Alias: a.Address, ForwardTo: slices.Clone(a.ForwardTo), State: a.State}, nil
		}
	}
	return t.catchAllRoute(alias, domain)
}

// lookup returns the managed alias, from the cache when fresh.
func (c *Combined) lookup(ctx context.Context, address string) (Alias, bool, error) {
	now := c.opt.Now()
	c.mu.Lock()
	e, ok := c.cache[address]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.alias, e.found, nil
	}
	lctx, cancel := context.WithTimeout(ctx, c.opt.LookupTimeout)
	a, err := c.store.Get(lctx, address)
	cancel()
	found := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		if ok && ctx.Err() == nil {
			// Stale beats nothing: the store is down or slow.
			c.log.Warn("alias store lookup failed; using the cached answer", "alias", address, "err", err)
			return e.alias, e.found, nil
		}
		return Alias{}, false, err
	}
	ttl := c.opt.CacheTTL
	if !found {
		ttl = c.opt.NegativeTTL
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(c.cache) >= c.opt.MaxEntries {
			clear(c.cache)
		}
		c.cache[address] = cached{alias: a, found: found, until: now.Add(ttl)}
	}
	c.mu.Unlock()
	return a, found, nil
}

// Invalidate empties the cache: the next lookups ask the store.
func (c *Combined) Invalidate() {
	c.mu.Lock()
	clear(c.cache)
	c.gen++
	c.mu.Unlock()
}

// Poll asks the store's version once and empties the cache when it
// changed (or on the first call). It reports whether it did.
func (c *Combined) Poll(ctx context.Context) (bool, error) {
	if c.store == nil {
		return false, nil
	}
	pctx, cancel := context.WithTimeout(ctx, c.opt.LookupTimeout)
	v, err := c.store.Version(pctx)
	cancel()
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	changed := !c.polled || v != c.version
	c.version, c.polled = v, true
	c.mu.Unlock()
	if changed {
		c.Invalidate()
	}
	return changed, nil
}

// Run polls the store's version every PollInterval until ctx ends, so a
// change made through any replica's admin API applies here within about
// that long.
func (c *Combined) Run(ctx context.Context) {
	if c.store == nil {
		return
	}
	tick := time.NewTicker(c.opt.PollInterval)
	defer tick.Stop()
	failing := false
	for {
		if _, err := c.Poll(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				c.log.Warn("alias store version poll failed; cached answers may be stale", "err", err)
			}
			failing = true
		} else if failing {
			c.log.Info("alias store version poll works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
