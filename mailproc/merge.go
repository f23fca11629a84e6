package mailproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// Merged is one Queue taking from several (the spool and the SQS intake),
// so that one pool works on both: each source has a feeder goroutine that
// takes its next entry and waits until a worker asks for one, so at most
// one entry per source waits between the two. The outcome of an entry is
// recorded in the source it came from.
type Merged struct {
	sources []Queue
	ch      chan taken
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	log     *slog.Logger

	mu    sync.Mutex
	owner map[string]Queue // handed out, not settled
}

type taken struct {
	e spool.Entry
	q Queue
}

// Merge starts feeding from sources until Close (or ctx ends).
func Merge(ctx context.Context, log *slog.Logger, sources ...Queue) *Merged {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Merged{sources: sources, ch: make(chan taken), cancel: cancel, log: log, owner: map[string]Queue{}}
	for _, q := range sources {
		m.wg.Add(1)
		go m.feed(ctx, q)
	}
	return m
}

// feed hands q's entries to Next until ctx ends; an entry taken but not
// handed out then is released.
func (m *Merged) feed(ctx context.Context, q Queue) {
	defer m.wg.Done()
	for {
		e, err := q.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, spool.ErrClosed) {
				return
			}
			m.log.Error("queue next failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case m.ch <- taken{e, q}:
		case <-ctx.Done():
			q.Release(e.ID)
			return
		}
	}
}

// Close stops the feeders and waits for them; entries they held are
// released.
func (m *Merged) Close() {
	m.cancel()
	m.wg.Wait()
}

// Next returns an entry from whichever source has one first.
func (m *Merged) Next(ctx context.Context) (spool.Entry, error) {
	select {
	case t := <-m.ch:
		m.mu.Lock()
		m.owner[t.e.ID] = t.q
		m.mu.Unlock()
		return t.e, nil
	case <-ctx.Done():
		return spool.Entry{}, ctx.Err()
	}
}

// source is the queue id came from; settle also forgets it.
func (m *Merged) source(id string, settle bool) (Queue, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.owner[id]
	if q == nil {
		return nil, fmt.Errorf("mailproc: merged queue: %q: %w", id, spool.ErrNotFound)
	}
	if settle {
		delete(m.owner, id)
	}
	return q, nil
}

// MarkSent implements Queue.
func (m *Merged) MarkSent(id, key, sesMessageID string) error {
	q, err := m.source(id, false)
	if err != nil {
		return err
	}
	return q.MarkSent(id, key, sesMessageID)
}

// Retry implements Queue.
func (m *Merged) Retry(id string, at time.Time, reason string) error {
	q, err := m.source(id, true)
	if err != nil {
		return err
	}
	return q.Retry(id, at, reason)
}

// Release implements Queue.
func (m *Merged) Release(id string) {
	if q, err := m.source(id, true); err == nil {
		q.Release(id)
	}
}

// Complete implements Queue. On failure the entry stays the source's, for
// the Release that follows.
func (m *Merged) Complete(id string) error {
	q, err := m.source(id, false)
	if err != nil {
		return err
	}
	if err := q.Complete(id); err != nil {
		return err
	}
	_, _ = m.source(id, true)
	return nil
}

// DeadLetter implements Queue. On failure the entry stays the source's.
func (m *Merged) DeadLetter(id, reason string) error {
	q, err := m.source(id, false)
	if err != nil {
		return err
	}
	if err := q.DeadLetter(id, reason); err != nil {
		return err
	}
	_, _ = m.source(id, true)
	return nil
}
