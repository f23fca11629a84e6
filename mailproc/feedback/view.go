package feedback

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// DefaultRefresh is Options.Refresh's default.
const DefaultRefresh = 2 * time.Second

// The per-mail checks read an in-memory view of the Store (State), not
// the Store: a query per check cost ~100 µs of CPU on SQLite. The view
// stays exact for this Handler's own writes — a bounce or complaint it
// records, an unpause or enable through it — which change the view as
// they change the Store. Other writers (other replicas on a shared
// database) are seen at the next load: Run reloads every Refresh/2, and a
// check never decides on a view older than Refresh — it reloads first, and
// fails (transient, as a failed query did) when the Store does not answer.
// Expiry (a pause's end, the complaint window, the UTC day) is decided at
// check time from the times the view holds.
//
// Sends are counted in memory (pending) and written to the Store by the
// next flush (every Refresh/2, before each load, and when Run ends), so
// this Handler's own count is always exact, others' counts arrive within
// Refresh, and a crash forgets at most Refresh/2 of sends.

// cache is the Handler's view and its pending send counts.
type cache struct {
	io sync.Mutex // serializes loads and flushes (the Store's calls)

	mu      sync.Mutex
	v       *view           // nil before the first load
	pending map[sendKey]int // sends not yet in the Store
	journal []func(v *view) // local writes made during a load
	loading bool            // a load is in flight: journal local writes
}

// view is a State as loaded at a time.
type view struct {
	State
	loaded time.Time // when the load began (its age is counted from there)
	day    int64     // the UTC day (dayNumber) of State.Sends
}

type sendKey struct {
	address string
	day     int64
}

// dayNumber is t's UTC day, counted from the epoch.
func dayNumber(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s%86400 < 0 {
		d--
	}
	return d
}

func dayString(d int64) string { return time.Unix(d*86400, 0).UTC().Format(time.DateOnly) }

// Check says whether a copy from alias to destinations may go: "" if so,
// else the reason it may not — ReasonAliasDisabled, ReasonAliasComplained
// (a complaint within the window and spamPass false), then
// ReasonDestinationPaused or ReasonDailyCap for the first destination
// concerned. It reads the view, loading it first when it is older than
// Refresh; the error is the load's.
func (h *Handler) Check(ctx context.Context, alias string, destinations []string, spamPass bool) (failure.Reason, error) {
	alias = strings.ToLower(alias)
	now := h.o.Now()
	c := &h.c
	c.mu.Lock()
	if c.v == nil || now.Sub(c.v.loaded) >= h.o.Refresh || now.Before(c.v.loaded) {
		c.mu.Unlock()
		if err := h.load(ctx, false); err != nil {
			return "", err
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	v := c.v
	if v.Disabled[alias] {
		return failure.ReasonAliasDisabled, nil
	}
	if !spamPass {
		if at, ok := v.Complained[alias]; ok && !at.Before(now.Add(-ComplaintWindow)) {
			return failure.ReasonAliasComplained, nil
		}
	}
	today := dayNumber(now)
	for _, d := range destinations {
		d = strings.ToLower(d)
		if until, ok := v.Paused[d]; ok && until.After(now) {
			return failure.ReasonDestinationPaused, nil
		}
		if h.o.DailyCap > 0 {
			n := c.pending[sendKey{d, today}]
			if v.day == today {
				n += v.Sends[d]
			}
			if n >= h.o.DailyCap {
				return failure.ReasonDailyCap, nil
			}
		}
	}
	return "", nil
}

// Sent counts a copy sent to destinations (for the daily cap), in memory:
// the Store has it at the next flush.
func (h *Handler) Sent(_ context.Context, destinations []string) error {
	if h.o.DailyCap <= 0 {
		return nil
	}
	today := dayNumber(h.o.Now())
	c := &h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[sendKey]int{}
	}
	for _, d := range destinations {
		c.pending[sendKey{strings.ToLower(d), today}]++
	}
	return nil
}

// Refresh flushes the pending send counts and reloads the view from the
// Store now (Run does it every Options.Refresh/2).
func (h *Handler) Refresh(ctx context.Context) error { return h.load(ctx, true) }

// Flush writes the pending send counts to the Store.
func (h *Handler) Flush(ctx context.Context) error {
	h.c.io.Lock()
	defer h.c.io.Unlock()
	return h.flush(ctx)
}

// Run keeps the view fresh — a flush and a load every Options.Refresh/2 —
// until ctx ends, then flushes the pending counts a last time (within 5
// s). A failed refresh is logged and the view kept; checks load it
// themselves once it is Refresh old, and fail while the Store does not
// answer.
func (h *Handler) Run(ctx context.Context) {
	t := time.NewTicker(max(h.o.Refresh/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := h.Flush(fctx); err != nil {
				h.o.Logger.Warn("feedback: last flush of the daily send counts failed", "err", err)
			}
			return
		case <-t.C:
			if err := h.Refresh(ctx); err != nil && ctx.Err() == nil {
				if h.o.Metrics != nil {
					h.o.Metrics.RefreshFailures.Inc()
				}
				h.o.Logger.Warn("feedback: refreshing the state failed; checks use the last one until it is "+h.o.Refresh.String()+" old", "err", err)
			}
		}
	}
}

// load flushes and loads the view; unless force, only if it is (still)
// Refresh old.
func (h *Handler) load(ctx context.Context, force bool) error {
	c := &h.c
	c.io.Lock()
	defer c.io.Unlock()
	now := h.o.Now()
	if !force {
		c.mu.Lock()
		fresh := c.v != nil && now.Sub(c.v.loaded) < h.o.Refresh && !now.Before(c.v.loaded)
		c.mu.Unlock()
		if fresh { // another check loaded it meanwhile
			return nil
		}
	}
	if err := h.flush(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.loading, c.journal = true, nil
	c.mu.Unlock()
	day := ""
	if h.o.DailyCap > 0 {
		day = dayString(dayNumber(now))
	}
	st, err := h.o.Store.Load(ctx, now, now.Add(-ComplaintWindow), day)
	c.mu.Lock()
	defer c.mu.Unlock()
	journal := c.journal
	c.loading, c.journal = false, nil
	if err != nil {
		return err
	}
	v := &view{State: st, loaded: now, day: dayNumber(now)}
	for _, f := range journal { // written after the load read, maybe
		f(v)
	}
	c.v = v
	return nil
}

// flush writes the pending counts (c.io held): each destination's count
// leaves pending as the view gets the Store's total, at once, so checks
// never count it twice or not at all.
func (h *Handler) flush(ctx context.Context) error {
	c := &h.c
	c.mu.Lock()
	batch := make(map[sendKey]int, len(c.pending))
	for k, n := range c.pending {
		batch[k] = n
	}
	c.mu.Unlock()
	for k, n := range batch {
		total, err := h.o.Store.AddSends(ctx, k.address, dayString(k.day), n)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.pending[k] -= n; c.pending[k] <= 0 {
			delete(c.pending, k)
		}
		if c.v != nil && c.v.day == k.day && total > c.v.Sends[k.address] {
			c.v.Sends[k.address] = total
		}
		c.mu.Unlock()
	}
	return nil
}

// local applies a write this Handler made to the Store (committed) to the
// view: now, and again to the view a load in flight will install.
func (h *Handler) local(f func(v *view)) {
	c := &h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v != nil {
		f(c.v)
	}
	if c.loading {
		c.journal = append(c.journal, f)
	}
}

func (h *Handler) paused(address string, until time.Time) {
	h.local(func(v *view) {
		if cur, ok := v.Paused[address]; !ok || until.After(cur) {
			v.Paused[address] = until
		}
	})
}

func (h *Handler) unpaused(address string) {
	h.local(func(v *view) { delete(v.Paused, address) })
}

func (h *Handler) complained(alias string, at time.Time) {
	h.local(func(v *view) {
		if cur, ok := v.Complained[alias]; !ok || at.After(cur) {
			v.Complained[alias] = at
		}
	})
}

func (h *Handler) aliasDisabled(alias string, on bool) {
	h.local(func(v *view) {
		if on {
			v.Disabled[alias] = true
		} else {
			delete(v.Disabled, alias)
		}
	})
}
