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
	r := &Reloadable{path: path}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload re-reads the file. On error the current table stays in use and the
// error is returned.
func (r *Reloadable) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, err := Load(r.path)
	if err != nil {
		return fmt.Errorf("reload aliases: %w", err)
	}
	r.cur.Store(t)
	return nil
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

// WatchSIGHUP reloads the file each time the process receives SIGHUP, until
// ctx is done. The signal handler is installed before WatchSIGHUP returns;
// the reloads run in a goroutine. report, if not nil, is called after every
// reload with its result (nil on success) so the caller can log and count.
func (r *Reloadable) WatchSIGHUP(ctx context.Context, report func(error)) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		r.watch(ctx, ch, report)
	}()
}

// watch reloads once per value received on ch until ctx is done.
func (r *Reloadable) watch(ctx context.Context, ch <-chan os.Signal, report func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			err := r.Reload()
			if report != nil {
				report(err)
			}
		}
	}
}
