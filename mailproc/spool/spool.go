package spool

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxMessages = 100_000
	DefaultMaxBytes    = 1 << 30
	DefaultDedupeTTL   = 24 * time.Hour
)

const (
	// maxWait caps how long Next sleeps on a retry timer before looking
	// again, so a wall clock step cannot strand an entry.
	maxWait = time.Minute
	// pruneInterval is how often expired dedupe markers are removed.
	pruneInterval = 10 * time.Second
	// pruneBatch is the number of markers removed per batch, pruneBatches
	// the number of batches per interval at most: the work per pass is
	// bounded, and 10,000 markers/s is well above the intake rate.
	pruneBatch   = 1000
	pruneBatches = 100
	// redriveBatch is the number of dead letters moved per write.
	redriveBatch = 128
)

// Options configures a Spool. Zero values mean the defaults.
type Options struct {
	MaxMessages int           // bound on pending entries (default 100_000)
	MaxBytes    int64         // bound on pending payload bytes (default 1 GiB)
	DedupeTTL   time.Duration // how long a finished MessageId is remembered (default 24h; SNS retries up to 1h)
	Logger      *slog.Logger
	Now         func() time.Time // for tests; default time.Now

	// fs replaces the file system, for tests and benchmarks.
	fs vfs.FS
}

// Spool is a durable, bounded queue of entries, keyed by ID, stored in
// pebble. It is safe for concurrent use.
//
// Key spaces: q/<id> pending (JSON Entry), d/<id> dead-lettered (JSON
// DeadLetter), s/<id> dedupe marker of a finished ID (expiry, unix seconds)
// and x/<expiry><id>, an index of the markers by expiry for pruning.
//
// Pending entries are indexed in memory (due time, age, size; no payload).
// The index is rebuilt from q/ on Open, so every unfinished entry resumes
// after a restart. Leases are in memory only: a crash releases them.
type Spool struct {
	db        *pebble.DB
	log       *slog.Logger
	now       func() time.Time
	maxMsgs   int
	maxBytes  int64
	dedupeTTL time.Duration

	done chan struct{} // closed by Close
	bg   sync.WaitGroup
	ops  sync.WaitGroup // operations using db; Close waits for them

	redriveMu sync.Mutex   // one Redrive at a time
	stalls    atomic.Int64 // pebble write stalls, for benchmarks

	mu            sync.Mutex
	closed        bool
	items         map[string]*item // pending entries
	due           dueHeap          // pending, not leased
	age           ageHeap          // pending
	bytes         int64            // payload bytes of pending entries
	dead          int              // dead letters
	reserved      int              // Puts between bound check and commit
	reservedBytes int64
	claims        map[string]chan struct{} // IDs being written by Put or Redrive; closed when done
	waiters       int                      // Next calls waiting on wake
	wake          chan struct{}            // closed (and replaced) when an entry may have become available
}

// Open opens (creating if needed) the spool in dir and rebuilds the index of
// pending entries.
func Open(dir string, opts Options) (*Spool, error) {
	if dir == "" {
		return nil, errors.New("spool: empty directory")
	}
	s := &Spool{
		log:       opts.Logger,
		now:       opts.Now,
		maxMsgs:   opts.MaxMessages,
		maxBytes:  opts.MaxBytes,
		dedupeTTL: opts.DedupeTTL,
		done:      make(chan struct{}),
		items:     map[string]*item{},
		claims:    map[string]chan struct{}{},
		wake:      make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("pkg", "spool")
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxMsgs <= 0 {
		s.maxMsgs = DefaultMaxMessages
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxBytes
	}
	if s.dedupeTTL <= 0 {
		s.dedupeTTL = DefaultDedupeTTL
	}

	po := &pebble.Options{
		FS:                 opts.fs,
		CacheSize:          8 << 20,
		MemTableSize:       16 << 20,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s.log.With("component", "pebble")},
		EventListener: &pebble.EventListener{
			// A write stall delays every Put and so every SNS acknowledgement.
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				s.stalls.Add(1)
				s.log.Warn("pebble write stall", "reason", info.Reason)
			},
			WriteStallEnd: func() { s.log.Info("pebble write stall ended") },
		},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // Put looks up absent d/ and s/ keys.
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("spool: opening pebble in %s: %w", dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	s.bg.Add(1)
	go s.pruneLoop()
	st := s.Stats()
	s.log.Info("spool opened", "dir", dir, "pending", st.Messages, "bytes", st.Bytes, "dead_letters", st.DeadLetters)
	return s, nil
}

// load rebuilds the index from q/ and counts d/. An entry that cannot be
// decoded is moved to the dead letters with its raw bytes as payload.
func (s *Spool) load() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixQueue), UpperBound: prefixEnd(prefixQueue)})
	if err != nil {
		return fmt.Errorf("spool: scanning pending: %w", err)
	}
	var corrupt []string
	for ok := it.First(); ok; ok = it.Next() {
		id := string(it.Key()[len(prefixQueue):])
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("spool: reading pending %q: %w", id, err)
		}
		e, err := decodeEntry(v)
		if err != nil || e.ID != id {
			corrupt = append(corrupt, id)
			continue
		}
		s.addLocked(&item{id: id, due: dueOf(e), enq: e.EnqueuedAt, size: int64(len(e.Payload))})
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("spool: scanning pending: %w", err)
	}
	for _, id := range corrupt {
		if err := s.buryCorrupt(id); err != nil {
			return err
		}
	}

	it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixDead), UpperBound: prefixEnd(prefixDead)})
	if err != nil {
		return fmt.Errorf("spool: scanning dead letters: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		s.dead++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("spool: scanning dead letters: %w", err)
	}
	return nil
}

// buryCorrupt moves an undecodable pending record to the dead letters, with
// the raw record as payload, so that it is neither lost nor retried forever.
func (s *Spool) buryCorrupt(id string) error {
	raw, err := s.get(dbKey(prefixQueue, id))
	if err != nil {
		return fmt.Errorf("spool: reading corrupt entry %q: %w", id, err)
	}
	s.log.Error("undecodable pending entry, moving to dead letters", "id", id)
	dl := DeadLetter{Entry: Entry{ID: id, Payload: raw}, Reason: "spool_corrupt_entry", DeadAt: s.now()}
	if checkID(id) != nil {
		dl.ID = fmt.Sprintf("corrupt-%x", id)
	}
	v, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("spool: encoding dead letter: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(dbKey(prefixQueue, id), nil)
	b.Set(dbKey(prefixDead, dl.ID), v, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("spool: moving corrupt entry %q: %w", id, err)
	}
	s.mu.Lock()
	if it := s.items[id]; it != nil {
		s.removeLocked(it)
	}
	s.dead++
	s.mu.Unlock()
	return nil
}

// Close stops background work, makes blocked and future calls return
// ErrClosed, waits for operations in progress and closes the database.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.bg.Wait()
	s.ops.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: closing pebble: %w", err)
	}
	return nil
}

// begin registers an operation that uses the database; the caller must call
// s.ops.Done when finished.
func (s *Spool) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.ops.Add(1)
	return nil
}

// get returns a copy of the value at k, or ErrNotFound.
func (s *Spool) get(k []byte) ([]byte, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	v = slices.Clone(v)
	if err := closer.Close(); err != nil {
		return nil, err
	}
	return v, nil
}

// claim makes the caller the only writer of a new record for id, waiting for
// a concurrent Put or Redrive of the same id. It returns pending=true (and no
// claim) if id is already pending.
func (s *Spool) claim(ctx context.Context, id string) (pending bool, err error) {
	for {
		s.mu.Lock()
		if _, ok := s.items[id]; ok {
			s.mu.Unlock()
			return true, nil
		}
		c, ok := s.claims[id]
		if !ok {
			s.claims[id] = make(chan struct{})
			s.mu.Unlock()
			return false, nil
		}
		s.mu.Unlock()
		// Bounded: each claim ends when its holder's write does.
		select {
		case <-c:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// settle waits for an operation in progress on the pending entry id (its
// item lock) and reports whether the entry has left the index since.
func (s *Spool) settle(id string) bool {
	s.mu.Lock()
	it := s.items[id]
	s.mu.Unlock()
	if it == nil {
		return true
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return it.removed
}

// unclaimLocked ends a claim taken by claim.
func (s *Spool) unclaimLocked(id string) {
	close(s.claims[id])
	delete(s.claims, id)
}

// addLocked adds a pending, unleased entry to the index.
func (s *Spool) addLocked(it *item) {
	s.items[it.id] = it
	s.bytes += it.size
	heap.Push(&s.due, it)
	heap.Push(&s.age, it)
}

// removeLocked removes a pending entry from the index.
func (s *Spool) removeLocked(it *item) {
	if it.removed {
		return
	}
	it.removed = true
	delete(s.items, it.id)
	s.bytes -= it.size
	if it.dueIdx >= 0 {
		heap.Remove(&s.due, it.dueIdx)
	}
	heap.Remove(&s.age, it.ageIdx)
}

// signalLocked wakes Next callers waiting for an entry.
func (s *Spool) signalLocked() {
	if s.waiters > 0 {
		close(s.wake)
		s.wake = make(chan struct{})
	}
}

// Put stores e durably (fsync'd) before returning. It returns duplicate=true,
// writing nothing, if e.ID is pending, dead-lettered, or finished less than
// DedupeTTL ago. It returns ErrFull when storing e would exceed a bound, and
// an error wrapping ErrInvalidID for a bad ID. A zero e.EnqueuedAt is set to
// now. Concurrent Puts share fsyncs (pebble's group commit); concurrent Puts
// of the same ID store it once, the others return duplicate=true.
func (s *Spool) Put(ctx context.Context, e Entry) (duplicate bool, err error) {
	if err := checkID(e.ID); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.ops.Done()

	if pending, err := s.claim(ctx, e.ID); err != nil || pending {
		return pending, err
	}
	// Released in one critical section with the index update, so that the
	// bounds and waiting Puts of the same ID never see a gap.
	var (
		reserved  bool
		size      = int64(len(e.Payload))
		committed *item
	)
	defer func() {
		s.mu.Lock()
		if reserved {
			s.reserved--
			s.reservedBytes -= size
		}
		if committed != nil {
			s.addLocked(committed)
			s.signalLocked()
		}
		s.unclaimLocked(e.ID)
		s.mu.Unlock()
	}()

	now := s.now()
	if _, err := s.get(dbKey(prefixDead, e.ID)); err == nil {
		return true, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("spool: checking dead letters: %w", err)
	}
	expiredMarker := false
	if v, err := s.get(dbKey(prefixSeen, e.ID)); err == nil {
		exp, err := parseExpiry(v)
		if err == nil && unixSeconds(now) < exp {
			return true, nil
		}
		expiredMarker = true // expired, or unreadable: accept the message rather than lose it
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("spool: checking dedupe marker: %w", err)
	}

	s.mu.Lock()
	if len(s.items)+s.reserved < s.maxMsgs && s.bytes+s.reservedBytes+size <= s.maxBytes {
		reserved = true
		s.reserved++
		s.reservedBytes += size
	}
	s.mu.Unlock()
	if !reserved {
		return false, ErrFull
	}

	if e.EnqueuedAt.IsZero() {
		e.EnqueuedAt = now
	}
	v, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("spool: encoding entry: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(dbKey(prefixQueue, e.ID), v, nil)
	if expiredMarker {
		b.Delete(dbKey(prefixSeen, e.ID), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("spool: writing entry: %w", err)
	}
	committed = &item{id: e.ID, due: dueOf(e), enq: e.EnqueuedAt, size: size}
	return false, nil
}

// Next waits until an entry is due and not leased, leases it (in memory
// only) and returns it with its payload. The entry due first is returned
// first; among equally due ones the oldest. It returns ctx.Err() when ctx
// ends and ErrClosed when the spool is closed.
func (s *Spool) Next(ctx context.Context) (Entry, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// Each iteration either returns or waits for a wake-up, the retry timer
	// or the end of ctx or of the spool.
	for {
		if err := ctx.Err(); err != nil {
			return Entry{}, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Entry{}, ErrClosed
		}
		var wait time.Duration = -1
		if len(s.due) > 0 {
			top := s.due[0]
			if d := top.due.Sub(s.now()); d > 0 {
				wait = min(d, maxWait)
			} else {
				heap.Pop(&s.due)
				top.leased = true
				s.ops.Add(1)
				s.mu.Unlock()
				e, err := s.readLeased(top)
				s.ops.Done()
				if errors.Is(err, errSkip) {
					continue
				}
				return e, err
			}
		}
		s.waiters++
		wake := s.wake
		s.mu.Unlock()

		var timerC <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}
		select {
		case <-wake:
		case <-timerC:
		case <-ctx.Done():
		case <-s.done:
		}
		if timer != nil {
			timer.Stop()
		}
		s.mu.Lock()
		s.waiters--
		s.mu.Unlock()
	}
}

// errSkip tells Next that the leased item vanished and it should look again.
var errSkip = errors.New("skip")

// readLeased reads the entry of a just-leased item. On failure the lease is
// dropped.
func (s *Spool) readLeased(it *item) (Entry, error) {
	v, err := s.get(dbKey(prefixQueue, it.id))
	if err == nil {
		var e Entry
		e, err = decodeEntry(v)
		if err == nil {
			return e, nil
		}
		if berr := s.buryCorrupt(it.id); berr != nil {
			s.log.Error("moving corrupt entry to dead letters", "id", it.id, "err", berr)
		}
		return Entry{}, errSkip
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, ErrNotFound) {
		// Cannot happen unless the index and the store disagree: trust the store.
		s.log.Error("pending entry missing from store, dropping from index", "id", it.id)
		s.removeLocked(it)
		return Entry{}, errSkip
	}
	s.releaseLocked(it)
	return Entry{}, fmt.Errorf("spool: reading entry %q: %w", it.id, err)
}

func (s *Spool) releaseLocked(it *item) {
	if it.removed || !it.leased {
		return
	}
	it.leased = false
	heap.Push(&s.due, it)
	s.signalLocked()
}

// lockItem returns the pending item for id with its mu locked, or
// ErrNotFound.
func (s *Spool) lockItem(id string) (*item, error) {
	s.mu.Lock()
	it := s.items[id]
	s.mu.Unlock()
	if it == nil {
		return nil, fmt.Errorf("%w: pending %q", ErrNotFound, id)
	}
	it.mu.Lock()
	s.mu.Lock()
	removed := it.removed
	s.mu.Unlock()
	if removed {
		it.mu.Unlock()
		return nil, fmt.Errorf("%w: pending %q", ErrNotFound, id)
	}
	return it, nil
}

// update applies fn to the stored pending entry id and writes it back
// durably. It returns the updated item, still pending.
func (s *Spool) update(id string, fn func(*Entry)) (*item, Entry, error) {
	if err := s.begin(); err != nil {
		return nil, Entry{}, err
	}
	defer s.ops.Done()
	it, err := s.lockItem(id)
	if err != nil {
		return nil, Entry{}, err
	}
	defer it.mu.Unlock()
	v, err := s.get(dbKey(prefixQueue, id))
	if err != nil {
		return nil, Entry{}, fmt.Errorf("spool: reading entry %q: %w", id, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return nil, Entry{}, fmt.Errorf("spool: entry %q: %w", id, err)
	}
	fn(&e)
	if v, err = json.Marshal(e); err != nil {
		return nil, Entry{}, fmt.Errorf("spool: encoding entry: %w", err)
	}
	if err := s.db.Set(dbKey(prefixQueue, id), v, pebble.Sync); err != nil {
		return nil, Entry{}, fmt.Errorf("spool: writing entry %q: %w", id, err)
	}
	return it, e, nil
}

// MarkSent durably records in Entry.Sent that the destination set key was
// handed to SES as sesMessageID, so a retry or restart does not send it again.
func (s *Spool) MarkSent(id, key, sesMessageID string) error {
	_, _, err := s.update(id, func(e *Entry) {
		if e.Sent == nil {
			e.Sent = map[string]string{}
		}
		e.Sent[key] = sesMessageID
	})
	return err
}

// Retry records a failed attempt: Attempts++, NextAttempt=at,
// LastError=reason, durably, and releases the lease. A zero at means now.
func (s *Spool) Retry(id string, at time.Time, reason string) error {
	it, e, err := s.update(id, func(e *Entry) {
		e.Attempts++
		e.NextAttempt = at
		e.LastError = reason
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if it.removed {
		return nil
	}
	it.due = dueOf(e)
	if it.leased {
		s.releaseLocked(it)
	} else {
		heap.Fix(&s.due, it.dueIdx)
		s.signalLocked()
	}
	return nil
}

// Release drops the lease on id without changing the entry, e.g. at
// shutdown. Unknown or unleased ids are ignored.
func (s *Spool) Release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.items[id]; it != nil {
		s.releaseLocked(it)
	}
}

// Complete finishes id: the entry is deleted and a dedupe marker expiring
// after DedupeTTL is written, in one durable write.
func (s *Spool) Complete(id string) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	it, err := s.lockItem(id)
	if err != nil {
		return err
	}
	defer it.mu.Unlock()
	exp := expiryAt(s.now(), s.dedupeTTL)
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(dbKey(prefixQueue, id), nil)
	b.Set(dbKey(prefixSeen, id), encodeExpiry(exp), nil)
	b.Set(expiryKey(exp, id), nil, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("spool: completing %q: %w", id, err)
	}
	s.mu.Lock()
	s.removeLocked(it)
	s.mu.Unlock()
	return nil
}

// DeadLetter moves id to the dead letters with reason and the current time,
// durably. A dead-lettered ID stays a duplicate for Put until redriven.
func (s *Spool) DeadLetter(id, reason string) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	it, err := s.lockItem(id)
	if err != nil {
		return err
	}
	defer it.mu.Unlock()
	v, err := s.get(dbKey(prefixQueue, id))
	if err != nil {
		return fmt.Errorf("spool: reading entry %q: %w", id, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return fmt.Errorf("spool: entry %q: %w", id, err)
	}
	dl := DeadLetter{Entry: e, Reason: reason, DeadAt: s.now()}
	if v, err = json.Marshal(dl); err != nil {
		return fmt.Errorf("spool: encoding dead letter: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(dbKey(prefixQueue, id), nil)
	b.Set(dbKey(prefixDead, id), v, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("spool: dead-lettering %q: %w", id, err)
	}
	s.mu.Lock()
	s.removeLocked(it)
	s.dead++
	s.mu.Unlock()
	return nil
}

// DeadLetters returns up to limit dead letters (all when limit <= 0), the
// oldest (by DeadAt) first.
func (s *Spool) DeadLetters(limit int) ([]DeadLetter, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixDead), UpperBound: prefixEnd(prefixDead)})
	if err != nil {
		return nil, fmt.Errorf("spool: listing dead letters: %w", err)
	}
	older := func(a, b DeadLetter) bool {
		if !a.DeadAt.Equal(b.DeadAt) {
			return a.DeadAt.Before(b.DeadAt)
		}
		return a.ID < b.ID
	}
	// l is kept sorted and, with a limit, no longer than limit, so memory
	// stays bounded however many dead letters there are.
	var l []DeadLetter
	for ok := iter.First(); ok; ok = iter.Next() {
		v, err := iter.ValueAndErr()
		if err != nil {
			iter.Close()
			return nil, fmt.Errorf("spool: reading dead letter: %w", err)
		}
		dl, err := decodeDeadLetter(v)
		if err != nil {
			s.log.Error("skipping undecodable dead letter", "key", string(iter.Key()), "err", err)
			continue
		}
		i := sort.Search(len(l), func(i int) bool { return older(dl, l[i]) })
		if limit > 0 && i >= limit {
			continue
		}
		l = slices.Insert(l, i, dl)
		if limit > 0 && len(l) > limit {
			l = l[:limit]
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("spool: listing dead letters: %w", err)
	}
	return l, nil
}

// Redrive moves dead letters back to pending with Attempts=0, due now (Sent
// is kept, so destinations already sent are not sent again). Without ids it
// moves all. It returns how many were moved; unknown ids are reported
// together in an error wrapping ErrNotFound, after the known ones are moved.
//
// Redrive never loses a message: it ignores the MaxMessages/MaxBytes bounds,
// so afterwards the spool may be over them (Full reports true and Put returns
// ErrFull until enough entries finish).
func (s *Spool) Redrive(ids ...string) (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.ops.Done()
	s.redriveMu.Lock()
	defer s.redriveMu.Unlock()

	if len(ids) == 0 {
		var err error
		if ids, err = s.deadIDs(); err != nil {
			return 0, err
		}
	} else {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	n := 0
	var missing []string
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), redriveBatch)]
		ids = ids[len(chunk):]
		moved, miss, err := s.redriveChunk(chunk)
		n += moved
		missing = append(missing, miss...)
		if err != nil {
			return n, err
		}
	}
	if len(missing) > 0 {
		return n, fmt.Errorf("%w: dead letters %s", ErrNotFound, strings.Join(missing, ", "))
	}
	return n, nil
}

func (s *Spool) deadIDs() ([]string, error) {
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixDead), UpperBound: prefixEnd(prefixDead)})
	if err != nil {
		return nil, fmt.Errorf("spool: listing dead letters: %w", err)
	}
	var ids []string
	for ok := iter.First(); ok; ok = iter.Next() {
		ids = append(ids, string(iter.Key()[len(prefixDead):]))
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("spool: listing dead letters: %w", err)
	}
	return ids, nil
}

// redriveChunk moves the dead letters ids (sorted, distinct) in one write.
func (s *Spool) redriveChunk(ids []string) (moved int, missing []string, rerr error) {
	var claimed []string
	var items []*item
	defer func() {
		s.mu.Lock()
		if rerr == nil {
			for _, it := range items {
				s.addLocked(it)
			}
			s.dead -= len(items)
			if len(items) > 0 {
				s.signalLocked()
			}
		}
		for _, id := range claimed {
			s.unclaimLocked(id)
		}
		s.mu.Unlock()
	}()

	now := s.now()
	b := s.db.NewBatch()
	defer b.Close()
	for _, id := range ids {
		if checkID(id) != nil {
			missing = append(missing, id)
			continue
		}
		// Redrives are serialized and a Put holds one claim at most, so
		// waiting here cannot deadlock.
		pending, err := s.claim(context.Background(), id)
		if err != nil {
			return 0, missing, err
		}
		if pending && s.settle(id) {
			// A DeadLetter of id was finishing (its write is visible to
			// readers before the index forgets the entry); now it is done.
			if pending, err = s.claim(context.Background(), id); err != nil {
				return 0, missing, err
			}
		}
		if pending {
			// A dead-lettered id cannot be pending: Put sees d/ as a duplicate.
			missing = append(missing, id)
			continue
		}
		claimed = append(claimed, id)
		v, err := s.get(dbKey(prefixDead, id))
		if errors.Is(err, ErrNotFound) {
			missing = append(missing, id)
			continue
		} else if err != nil {
			return 0, missing, fmt.Errorf("spool: reading dead letter %q: %w", id, err)
		}
		dl, err := decodeDeadLetter(v)
		if err != nil {
			return 0, missing, fmt.Errorf("spool: dead letter %q: %w", id, err)
		}
		e := dl.Entry
		e.ID = id
		e.Attempts = 0
		e.NextAttempt = now
		ev, err := json.Marshal(e)
		if err != nil {
			return 0, missing, fmt.Errorf("spool: encoding entry: %w", err)
		}
		b.Delete(dbKey(prefixDead, id), nil)
		b.Set(dbKey(prefixQueue, id), ev, nil)
		items = append(items, &item{id: id, due: dueOf(e), enq: e.EnqueuedAt, size: int64(len(e.Payload))})
	}
	if len(items) == 0 {
		return 0, missing, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		items = nil
		return 0, missing, fmt.Errorf("spool: redriving: %w", err)
	}
	return len(items), missing, nil
}

// Stats returns the current size of the spool from in-memory counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Messages: len(s.items), Bytes: s.bytes, DeadLetters: s.dead}
	if len(s.age) > 0 {
		st.Oldest = s.age[0].enq
	}
	return st
}

// Full reports whether the spool is at or over either bound.
func (s *Spool) Full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items) >= s.maxMsgs || s.bytes >= s.maxBytes
}

func (s *Spool) pruneLoop() {
	defer s.bg.Done()
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		// Bounded: at most pruneBatches batches per tick.
		for range pruneBatches {
			n, err := s.pruneOnce(pruneBatch)
			if err != nil {
				s.log.Error("pruning dedupe markers", "err", err)
				break
			}
			if n < pruneBatch {
				break
			}
			select {
			case <-s.done:
				return
			default:
			}
		}
	}
}

// pruneOnce removes up to limit expired dedupe markers and returns how many
// expiry index entries it removed.
func (s *Spool) pruneOnce(limit int) (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.ops.Done()
	now := unixSeconds(s.now())
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixExpiry), UpperBound: expiryKey(now+1, "")})
	if err != nil {
		return 0, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	for ok := iter.First(); ok && n < limit; ok = iter.Next() {
		n++
		b.Delete(slices.Clone(iter.Key()), nil)
		_, id, err := parseExpiryKey(iter.Key())
		if err != nil {
			continue
		}
		// The marker may have been rewritten since (finished again after
		// expiring): only delete it if it has expired itself.
		sk := dbKey(prefixSeen, id)
		v, err := s.get(sk)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			iter.Close()
			return 0, err
		}
		if exp, err := parseExpiry(v); err != nil || exp <= now {
			b.Delete(sk, nil)
		}
	}
	if err := iter.Close(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	// Losing these deletes in a crash is harmless: the next pass redoes them.
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, err
	}
	return n, nil
}
