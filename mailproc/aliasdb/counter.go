package aliasdb

import (
	"context"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// DefaultFlushInterval is how often Counter writes its counts.
const DefaultFlushInterval = time.Second

// maxPending bounds the aliases a Counter holds counts for between
// flushes; events for more are not counted (the database is far behind).
const maxPending = 100_000

// Counter batches alias events in memory and adds them to the store's
// counters every flush interval: AliasEvent takes a mutex and bumps a map
// entry, so the send path never waits on the database. Counts not yet
// flushed when the process dies are lost; they are statistics.
type Counter struct {
	store    *Store
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	pending map[string]aliases.Counts
}

// NewCounter returns a Counter writing to s.
func NewCounter(s *Store, log *slog.Logger) *Counter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Counter{store: s, interval: DefaultFlushInterval, log: log, now: time.Now, pending: map[string]aliases.Counts{}}
}

// AliasEvent counts one event for alias (a canonical address).
func (c *Counter) AliasEvent(alias string, ev aliases.Event) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.pending[alias]
	if !ok && len(c.pending) >= maxPending {
		return
	}
	switch ev {
	case aliases.EventForwarded:
		d.Forwarded++
	case aliases.EventBlocked:
		d.Blocked++
	case aliases.EventReplied:
		d.Replied++
	case aliases.EventSpam:
		d.Spam++
	}
	d.LastUsed = now
	c.pending[alias] = d
}

// Flush writes the counts gathered so far. On failure they are kept for
// the next flush.
func (c *Counter) Flush(ctx context.Context) error {
	c.mu.Lock()
	batch := c.pending
	c.pending = map[string]aliases.Counts{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := c.store.AddCounts(ctx, batch)
	if err != nil {
		c.mu.Lock()
		for a, d := range batch {
			p, ok := c.pending[a]
			if !ok && len(c.pending) >= maxPending {
				continue
			}
			p.Forwarded += d.Forwarded
			p.Blocked += d.Blocked
			p.Replied += d.Replied
			p.Spam += d.Spam
			if d.LastUsed.After(p.LastUsed) {
				p.LastUsed = d.LastUsed
			}
			c.pending[a] = p
		}
		c.mu.Unlock()
	}
	return err
}

// Run flushes every interval until ctx ends, then once more (bounded by
// 5 s).
func (c *Counter) Run(ctx context.Context) {
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := c.Flush(fctx); err != nil {
				c.log.Warn("alias counters not written at shutdown", "err", err)
			}
			cancel()
			return
		case <-tick.C:
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := c.Flush(fctx); err != nil && ctx.Err() == nil {
				c.log.Warn("alias counters not written; will try again", "err", err)
			}
			cancel()
		}
	}
}

// mustSub is fs.Sub of an embedded directory known to exist.
func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}
