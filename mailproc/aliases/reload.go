package aliases

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// Reloadable is a Resolver over an alias file that can be re-read while the
// relay runs. Lookups never block: they use the current table through an
// atomic pointer. A reload that fails (unreadable file, invalid content)
// keeps the previous table.
type Reloadable struct {
	path string
	mu   sync.Mutex // serialises reloads, so an older read never replaces a newer one
	cur  atomic.Pointer[Table]
}

var _ Resolver = (*Reloadable)(nil)

// NewReloadable loads the alias file at path. The initial load must succeed.
func NewReloadable(path string) (*Reloadable, error) {
	t, err := Load(path)
	if err != nil {
		return nil, err
	}
	r := &Reloadable{path: path}
	r.cur.Store(t)
	return r, nil
}

// Change is what a reload changed: alias addresses (exact aliases and
// catch-alls, "@domain") added and removed, and how many there are now.
type Change struct {
	Added, Removed, Total int
}

// Reload re-reads the file and says what changed. On error the current
// table stays in use and the error is returned.
func (r *Reloadable) Reload() (Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, err := Load(r.path)
	if err != nil {
		return Change{}, fmt.Errorf("reload aliases: %w", err)
	}
	c := t.changeFrom(r.cur.Load())
	r.cur.Store(t)
	return c, nil
}

// Table returns the table currently in use.
func (r *Reloadable) Table() *Table { return r.cur.Load() }

// Resolve resolves address with the current table, see Table.Resolve.
func (r *Reloadable) Resolve(ctx context.Context, address string) (Route, error) {
	return r.cur.Load().Resolve(ctx, address)
}

// IsOurDomain reports whether domain is a relay domain in the current table.
func (r *Reloadable) IsOurDomain(domain string) bool {
	return r.cur.Load().IsOurDomain(domain)
}

// changeFrom counts the alias addresses of t that prev lacks and those of
// prev that t lacks. A nil prev has none.
func (t *Table) changeFrom(prev *Table) Change {
	cur := t.addresses()
	c := Change{Total: len(cur)}
	var old map[string]bool
	if prev != nil {
		old = prev.addresses()
	}
	for a := range cur {
		if !old[a] {
			c.Added++
		}
	}
	for a := range old {
		if !cur[a] {
			c.Removed++
		}
	}
	return c
}

// addresses is the set of alias addresses: exact ones and "@domain" for
// each catch-all.
func (t *Table) addresses() map[string]bool {
	out := make(map[string]bool, len(t.exact)+len(t.catchAll))
	for a := range t.exact {
		out[a] = true
	}
	for d := range t.catchAll {
		out["@"+d] = true
	}
	return out
}

// WatchSIGHUP reloads the file each time the process receives SIGHUP, until
// ctx is done. The signal handler is installed before WatchSIGHUP returns;
// the reloads run in a goroutine. report, if not nil, is called after every
// reload with what changed, or the error, so the caller can log and count.
func (r *Reloadable) WatchSIGHUP(ctx context.Context, report func(Change, error)) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		r.watch(ctx, ch, report)
	}()
}

// watch reloads once per value received on ch until ctx is done.
func (r *Reloadable) watch(ctx context.Context, ch <-chan os.Signal, report func(Change, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			c, err := r.Reload()
			if report != nil {
				report(c, err)
			}
		}
	}
}
