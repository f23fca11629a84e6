package inbound

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultSlowGrace is how long a connection may take to send its request
// (headers and body) before a new connection, arriving at the limit, may
// close it to take its place.
const DefaultSlowGrace = time.Second

// LimitListener returns ln limited to max connections served by srv at
// once, without letting idle or slow clients hoard the slots (unlike
// netutil.LimitListener, which blocks Accept until a connection closes).
// When a connection arrives at the limit, Accept makes room by closing, in
// order of preference:
//
//  1. the connection idle (between keep-alive requests) the longest;
//  2. the oldest connection still sending its request (headers or body)
//     after slowGrace (DefaultSlowGrace if 0): slowloris clients.
//
// A connection whose request was read and is being answered (a handler
// waiting for the queue's fsync, say) is never closed. If nothing can be
// closed yet, Accept waits until a slot frees or a sender passes its
// grace, so the wait for a new connection is at most about slowGrace.
//
// It sets srv.ConnState and srv.ConnContext (calling any already set) to
// follow the connections' states; the Handler marks a request's body read.
// Serve srv on the returned listener only. A max below 1 means no limit.
func LimitListener(ln net.Listener, srv *http.Server, max int, slowGrace time.Duration) net.Listener {
	if max < 1 {
		return ln // no limit
	}
	if slowGrace <= 0 {
		slowGrace = DefaultSlowGrace
	}
	l := &limitListener{
		Listener: ln,
		max:      max,
		grace:    slowGrace,
		conns:    map[*trackedConn]struct{}{},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
		now:      time.Now,
	}
	prevState, prevCtx := srv.ConnState, srv.ConnContext
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*trackedConn); ok && tc.l == l {
			l.setState(tc, s)
		}
		if prevState != nil {
			prevState(c, s)
		}
	}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		if tc, ok := c.(*trackedConn); ok {
			ctx = context.WithValue(ctx, connKey{}, tc)
		}
		return ctx
	}
	return l
}

// phase is where a tracked connection is in its life.
type phase int

const (
	phaseNew     phase = iota // accepted, no request byte yet
	phaseReading              // reading a request (headers, then body)
	phaseBusy                 // request read; being answered
	phaseIdle                 // between keep-alive requests
)

type limitListener struct {
	net.Listener
	max   int
	grace time.Duration
	now   func() time.Time

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	changed chan struct{} // closed (and replaced) when room may have appeared

	closeOnce sync.Once
	done      chan struct{}
}

type trackedConn struct {
	net.Conn
	l *limitListener

	// guarded by l.mu
	phase phase
	since time.Time

	closeOnce sync.Once
	closeErr  error
}

type connKey struct{}

// Accept accepts a connection, then makes room for it if at the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			tc := &trackedConn{Conn: c, l: l, phase: phaseNew, since: l.now()}
			l.conns[tc] = struct{}{}
			l.mu.Unlock()
			return tc, nil
		}
		victim, wait := l.victimLocked()
		if victim != nil {
			// Out of the count now; its Close finds it gone.
			delete(l.conns, victim)
			l.mu.Unlock()
			victim.closeConn()
			continue
		}
		changed := l.changed
		l.mu.Unlock()
		if !l.wait(changed, wait) {
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// wait waits for changed, for d if positive, or for the listener's close
// (false).
func (l *limitListener) wait(changed <-chan struct{}, d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-changed:
	case <-timer:
	case <-l.done:
		return false
	}
	return true
}

// victimLocked returns the connection to close to make room, or nil and
// how long until a sender passes its grace (0: none is sending).
func (l *limitListener) victimLocked() (*trackedConn, time.Duration) {
	now := l.now()
	var idle, slow *trackedConn
	var wait time.Duration
	for c := range l.conns {
		switch c.phase {
		case phaseIdle:
			if idle == nil || c.since.Before(idle.since) {
				idle = c
			}
		case phaseNew, phaseReading:
			if left := c.since.Add(l.grace).Sub(now); left > 0 {
				if wait == 0 || left < wait {
					wait = left
				}
			} else if slow == nil || c.since.Before(slow.since) {
				slow = c
			}
		}
	}
	if idle != nil {
		return idle, 0
	}
	if slow != nil {
		return slow, 0
	}
	return nil, wait
}

// notifyLocked wakes an Accept waiting for room.
func (l *limitListener) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *limitListener) setState(c *trackedConn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	switch s {
	case http.StateActive:
		c.phase, c.since = phaseReading, l.now()
	case http.StateIdle:
		c.phase, c.since = phaseIdle, l.now()
		l.notifyLocked()
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
		l.notifyLocked()
	}
}

// Close closes the listener and wakes an Accept waiting for room.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Close closes the connection and frees its slot.
func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	if _, ok := c.l.conns[c]; ok {
		delete(c.l.conns, c)
		c.l.notifyLocked()
	}
	c.l.mu.Unlock()
	return c.closeConn()
}

func (c *trackedConn) closeConn() error {
	c.closeOnce.Do(func() { c.closeErr = c.Conn.Close() })
	return c.closeErr
}

// requestRead marks the connection serving ctx's request as done reading
// it: it is answered now, and is not closed to make room.
func requestRead(ctx context.Context) {
	c, ok := ctx.Value(connKey{}).(*trackedConn)
	if !ok {
		return
	}
	c.l.mu.Lock()
	if _, ok := c.l.conns[c]; ok && c.phase == phaseReading {
		c.phase = phaseBusy
	}
	c.l.mu.Unlock()
}
