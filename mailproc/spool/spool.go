// Package spool is the relay's durable, bounded queue of accepted
// notifications. An entry is fsync'd before the SNS delivery that carried it
// is acknowledged, survives restarts, and leaves only by being completed or
// dead-lettered (from where an operator can redrive it).
//
// Files: spool.go (Spool, Open, Close), put.go (intake and dedupe),
// work.go (Next, Retry, MarkSent, Complete: the life of a pending entry),
// transition.go (the one read-change-write sequence of stored records),
// deadletter.go (DeadLetter, DeadLetters, Redrive), prune.go (expiry of
// dedupe markers and of dead letters over their bounds), stats.go (Stats,
// Full), index.go (the in-memory indexes), record.go (key spaces and
// encodings), entry.go (exported types and errors), disk.go (disk space:
// the reserve, ENOSPC, failing closed, opening late), pebblelog.go
// (pebble's logger, rate-limited logs).
package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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

	DefaultMaxDeadLetters     = 10_000
	DefaultMaxDeadLetterBytes = 256 << 20
	DefaultMaxDeadLetterAge   = 14 * 24 * time.Hour
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

	// Dead letters are bounded too: over any of these bounds the oldest
	// (by DeadAt) are deleted, at insertion and every pruneInterval.
	MaxDeadLetters     int           // default 10_000
	MaxDeadLetterBytes int64         // payload bytes (default 256 MiB)
	MaxDeadLetterAge   time.Duration // default 14 days
	// OnDeadLettersExpired, if set, is told how many dead letters were
	// deleted by the bounds above (for a counter).
	OnDeadLettersExpired func(n int)

	// ReserveBytes is the disk space kept for the spool (default 64 MiB,
	// negative disables): a ballast file of this size, released when a
	// write finds the disk full, and the free space under which Put
	// refuses new entries with ErrNoSpace.
	ReserveBytes int64
	// OnFatal, if set, is called once (on its own goroutine) when the
	// spool fails closed after a storage error pebble cannot recover
	// from; a process should exit so that it restarts (see Spool).
	OnFatal func(error)

	// CacheBytes bounds the memory of the pending entries kept decoded
	// (payload included) from their Put or last change, so that Next and
	// MarkSent do not read them from disk (default DefaultCacheBytes,
	// negative disables). Entries beyond it are read from disk.
	CacheBytes int64

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
// Pending entries are indexed in memory (due time, age, size), and the
// entries themselves are cached there up to Options.CacheBytes (cache.go):
// never staler than the store, filled after each commit that writes one.
// The index is rebuilt from q/ on Open (without cached entries), so every
// unfinished entry resumes after a restart. Leases are in memory only: a crash releases them.
//
// Durability. Every change of an entry's state is one pebble batch, so all
// of its keys change together or not at all, and the in-memory index follows
// a write only after it has committed. pebble's WAL is one append-only log:
// a synced commit makes every commit before it durable too, and a crash
// loses at most a suffix of unsynced commits, never one from the middle.
// Concurrent synced commits share WAL fsyncs (pebble's group commit).
//
//   - Put (the acknowledgement), MarkSent, Retry, DeadLetter, Redrive and
//     burying a corrupt entry commit with pebble.Sync: on disk before the
//     call returns. Put is the one synced commit of a mail on the
//     acknowledgement path; MarkSent is a worker's, after the send, and
//     shares fsyncs with the Puts around it.
//   - Complete commits without a sync. The entry's sent-record (MarkSent)
//     is durable before Complete is called, so a crash that loses a
//     Complete (and with it every commit after the last synced one) brings
//     back entries whose every copy is recorded sent: the worker completes
//     them again without sending (mailproc's allSent), nor downloading. The
//     dedupe marker is lost with it, but the pending entry dedupes the
//     same ID meanwhile. Cost of a crash: some entries finished twice
//     (their S3 object deleted again, a feedback notification applied
//     again: complaints count once per feedbackId), never a copy sent
//     twice.
//   - What a crash can cost in duplicates is unchanged: a copy is sent
//     again only if the crash falls between SES accepting it and its
//     MarkSent commit returning, so at most one duplicate per send in
//     flight (one per worker) per crash, and never a loss: nothing is
//     acknowledged before its Put is synced.
//   - MarkSent must stay synced: unsynced, a crash could lose the sent-
//     records of every copy sent since the last sync (any number of mails,
//     not one per worker), and Complete's safety rests on it.
//
// The other writes without fsync are the removal of expired dedupe markers
// (pruneOnce), which a later pass redoes if a crash loses it, and of dead
// letters over their bounds (below).
//
// Dead letters are bounded by count, payload bytes and age; over a bound
// the oldest (by DeadAt) are deleted (expireDead, without fsync like the
// marker pruning: a crash may bring some back, to be expired again). They
// count toward MaxMessages and MaxBytes with the pending entries.
//
// Disk full. pebble does not survive a failed write of its own: an error
// committing a batch (WAL write or fsync) or writing the MANIFEST goes to
// Logger.Fatalf, a failed WAL rotation panics with pebble's mutex unlocked
// (a "sync: unlock of unlocked mutex" fatal error nothing can recover), and
// its WAL writer keeps the first error, so every later commit panics while
// holding the commit pipeline's lock (recovering it would hang the next
// commit and Close). So the spool keeps pebble from meeting a full disk:
//
//  1. A ballast file of ReserveBytes is kept in the directory, and Put
//     refuses new entries with ErrNoSpace (503) while less than the reserve
//     is free or the ballast is missing (checked every second). The other
//     writes (MarkSent, Retry, Complete, DeadLetter, pruning) go on: they
//     finish entries and free space. The memtable is at most a quarter of
//     the reserve, so a flush and a WAL fit in it.
//  2. pebble writes through vfs.OnDiskFull: the first write that finds the
//     disk full (ENOSPC; EDQUOT is reported as ENOSPC) deletes the ballast,
//     and is retried once, into the space it freed. Put refuses from then
//     until there is room for the ballast and the reserve, when the ballast
//     is recreated and Puts resume by themselves.
//  3. What is left is fatal for pebble: a failed fsync (never retried: what
//     it lost is unknown), or a disk filled past the released ballast.
//     Fatalf puts the spool in a sticky failed state and panics; commit
//     recovers that panic in the committing goroutine. From then every
//     write returns ErrStorage without reaching pebble, Next hands out
//     nothing, Full and Err report it, Close gives up on pebble after
//     closeTimeout, and OnFatal is called: the process should exit and be
//     restarted (recovering in-process is not possible: the broken DB
//     keeps its directory lock). A Fatalf in a pebble goroutine ends the
//     process with a panic.
//  4. Open on a disk without the ballast and with less than the reserve
//     free does not open pebble (its own writes at open could fail
//     fatally): the spool serves refusals (ErrNoSpace, Full) and diskLoop
//     opens the store once there is room; so a restart on a full disk
//     comes up not ready instead of crash-looping.
//
// Nothing is acknowledged that is not on disk: Put returns nil only after
// its commit with pebble.Sync returned nil.
type Spool struct {
	db        *pebble.DB
	log       *slog.Logger
	now       func() time.Time
	maxMsgs   int
	maxBytes  int64
	dedupeTTL time.Duration

	maxDead      int
	maxDeadBytes int64
	maxDeadAge   time.Duration
	onExpired    func(int)

	// Storage health (disk.go).
	fs         vfs.FS // the file system under pebble's ENOSPC wrapper
	dir        string
	ballast    string // path of the ballast file
	reserve    int64
	onFatal    func(error)
	noSpace    atomic.Bool           // free space below the reserve
	failed     atomic.Pointer[error] // set once: the spool fails closed
	storageLog *limitedLog

	done chan struct{} // closed by Close
	bg   sync.WaitGroup
	ops  sync.WaitGroup // operations using db; Close waits for them

	stalls atomic.Int64 // pebble write stalls, for benchmarks

	// Locks, outermost first. A goroutine may take a lock only while it
	// holds none listed after it; each may be skipped.
	//
	//  1. redriveMu: one Redrive at a time. Held across the whole Redrive,
	//     including its writes and its waits for claims and item locks.
	//  2. claims (below): a claim on an ID, taken by Put (one at a time) and
	//     Redrive (several, one chunk), is an exclusive right to write a new
	//     q/ record for that ID. It is waited for (claim) holding neither
	//     an item.mu nor mu; a Put holding its claim waits for nothing but
	//     mu and the database, so Redrive may wait for a Put's claim while
	//     holding its own.
	//  3. item.mu: serializes the read-change-write of one pending entry
	//     (transition; settle waits on it). At most one item.mu is held at
	//     a time. It is held across database reads and the fsync'd commit.
	//  4. mu: guards the fields below it and the index fields of every item
	//     (leased, removed, dueIdx, ageIdx, due). It is the innermost lock,
	//     held only for in-memory work: never across a database call, a
	//     wait on a channel or another lock.
	//
	// pebble's own locks come after all of these. ops and bg are waited for
	// by Close without any lock held.
	redriveMu sync.Mutex

	mu            sync.Mutex
	closed        bool
	live          bool             // the store is open and the index loaded (openDB)
	items         map[string]*item // pending entries
	due           dueHeap          // pending, not leased
	age           ageHeap          // pending
	bytes         int64            // payload bytes of pending entries
	deadItems     map[string]*deadItem
	deadAge       deadHeap // dead letters, the oldest on top
	deadBytes     int64    // payload bytes of dead letters
	deadExpired   uint64   // dead letters deleted by the bounds, since Open
	reserved      int      // Puts between bound check and commit
	reservedBytes int64
	cacheBytes    int64                    // bytes of cached entries (cache.go)
	cacheMax      int64                    // bound on cacheBytes
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
		log:          opts.Logger,
		now:          opts.Now,
		maxMsgs:      opts.MaxMessages,
		maxBytes:     opts.MaxBytes,
		dedupeTTL:    opts.DedupeTTL,
		maxDead:      opts.MaxDeadLetters,
		maxDeadBytes: opts.MaxDeadLetterBytes,
		maxDeadAge:   opts.MaxDeadLetterAge,
		onExpired:    opts.OnDeadLettersExpired,
		fs:           opts.fs,
		dir:          dir,
		reserve:      opts.ReserveBytes,
		onFatal:      opts.OnFatal,
		cacheMax:     opts.CacheBytes,
		done:         make(chan struct{}),
		items:        map[string]*item{},
		deadItems:    map[string]*deadItem{},
		claims:       map[string]chan struct{}{},
		wake:         make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("pkg", "spool")
	s.storageLog = newLimitedLog(s.log, logEvery)
	if s.fs == nil {
		s.fs = vfs.Default
	}
	if s.reserve == 0 {
		s.reserve = DefaultReserveBytes
	}
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: creating %s: %w", dir, err)
	}
	s.ballast = s.fs.PathJoin(dir, ballastName)
	s.checkDisk()
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
	if s.cacheMax == 0 {
		s.cacheMax = DefaultCacheBytes
	}
	if s.maxDead <= 0 {
		s.maxDead = DefaultMaxDeadLetters
	}
	if s.maxDeadBytes <= 0 {
		s.maxDeadBytes = DefaultMaxDeadLetterBytes
	}
	if s.maxDeadAge <= 0 {
		s.maxDeadAge = DefaultMaxDeadLetterAge
	}

	if s.deferOpen() {
		s.storageLog.Error("spool disk full at start: not opening the store until space returns; refusing deliveries",
			"dir", dir, "reserve_bytes", s.reserve)
	} else if err := s.openDB(); err != nil {
		if !isNoSpace(err) || s.reserve <= 0 {
			return nil, err
		}
		s.storageLog.Error("spool disk full at start: opening the store failed, retrying when space returns; refusing deliveries",
			"dir", dir, "err", err)
	}
	s.bg.Add(2)
	go s.pruneLoop()
	go s.diskLoop()
	return s, nil
}

// pebbleOptions are the options of the spool's pebble instance.
func (s *Spool) pebbleOptions() *pebble.Options {
	po := &pebble.Options{
		FS:                 vfs.OnDiskFull(quotaFS{s.fs}, s.onDiskFull),
		CacheSize:          blockCacheSize(s.reserve),
		MemTableSize:       memTableSize(s.reserve),
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             newPebbleLogger(s.log.With("component", "pebble"), s.fail),
		EventListener: &pebble.EventListener{
			// A write stall delays every Put and so every SNS acknowledgement.
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				s.stalls.Add(1)
				s.log.Warn("pebble write stall", "reason", info.Reason)
			},
			WriteStallEnd: func() { s.log.Info("pebble write stall ended") },
			// A flush or compaction that failed; pebble retries it. Out of
			// space, Put stops taking entries at once (checkDisk lifts it).
			BackgroundError: func(err error) {
				if isNoSpace(err) {
					s.noSpace.Store(true)
				}
				s.storageLog.Error("pebble background error (retried)", "err", err)
			},
			DiskSlow: func(info pebble.DiskSlowInfo) {
				s.storageLog.Warn("spool disk slow", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
			},
		},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // Put looks up absent d/ and s/ keys.
	}
	return po
}

// openDB opens pebble and rebuilds the index; then the spool is live. On
// failure nothing is left open and the index is empty. A fatal error of
// pebble's while opening is returned, not a failure of the spool: a later
// attempt (diskLoop) may succeed.
func (s *Spool) openDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("spool: opening pebble in %s: %s: %w", s.dir, fp.msg, syscall.ENOSPC)
		}
	}()
	db, err := pebble.Open(s.dir, s.pebbleOptions())
	if err != nil {
		return fmt.Errorf("spool: opening pebble in %s: %w", s.dir, err)
	}
	s.mu.Lock()
	s.db = db
	s.mu.Unlock()
	if err := s.load(); err != nil {
		s.mu.Lock()
		s.db = nil
		s.resetIndexLocked()
		s.mu.Unlock()
		_ = db.Close()
		return err
	}
	s.mu.Lock()
	s.live = true
	s.signalLocked()
	s.mu.Unlock()
	st := s.Stats()
	s.log.Info("spool opened", "dir", s.dir, "pending", st.Messages, "bytes", st.Bytes, "dead_letters", st.DeadLetters)
	return nil
}

// resetIndexLocked empties the in-memory index (after a failed load).
func (s *Spool) resetIndexLocked() {
	s.items, s.due, s.age, s.bytes, s.cacheBytes = map[string]*item{}, nil, nil, 0, 0
	s.deadItems, s.deadAge, s.deadBytes = map[string]*deadItem{}, nil, 0
}

// load rebuilds the index from q/ and counts d/. An entry that cannot be
// decoded is moved to the dead letters with its raw bytes as payload.
func (s *Spool) load() error {
	var corrupt []string
	err := s.scan(prefixQueue, "scanning pending", func(it *pebble.Iterator) error {
		id := string(it.Key()[len(prefixQueue):])
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("spool: reading pending %q: %w", id, err)
		}
		e, err := decodeEntry(v)
		if err != nil || e.ID != id {
			corrupt = append(corrupt, id)
			return nil
		}
		s.mu.Lock()
		s.addLocked(&item{id: id, due: dueOf(e), enq: e.EnqueuedAt, size: int64(len(e.Payload))})
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	// Dead letters are indexed before burying: buryCorrupt indexes each
	// record it moves.
	if err := s.scan(prefixDead, "scanning dead letters", func(it *pebble.Iterator) error {
		id := string(it.Key()[len(prefixDead):])
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("spool: reading dead letter %q: %w", id, err)
		}
		d := &deadItem{id: id, at: s.now(), size: int64(len(v))}
		if dl, err := decodeDeadLetter(v); err == nil {
			d.at, d.size = dl.DeadAt, int64(len(dl.Payload))
		}
		s.mu.Lock()
		s.addDeadLocked(d)
		s.mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	for _, id := range corrupt {
		if err := s.buryCorrupt(id); err != nil {
			return err
		}
	}
	_, err = s.expireDeadNow()
	return err
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
	// Bounded: after a storage failure an operation may be stuck in
	// pebble, and pebble's Close may never return. The process is about to
	// exit then; everything acknowledged is on disk already.
	deadline := time.Now().Add(closeTimeout)
	if !waitUntil(&s.bg, deadline) || !waitUntil(&s.ops, deadline) {
		return fmt.Errorf("spool: operations still running after %v; not closing pebble", closeTimeout)
	}
	if s.db == nil {
		return nil // never opened (disk full since the start)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.db.Close() }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("spool: closing pebble: %w", err)
		}
		return nil
	case <-time.After(time.Until(deadline)):
		return fmt.Errorf("spool: pebble did not close within %v (storage failure: %v)", closeTimeout, s.writable(false))
	}
}

// closeTimeout bounds Close.
const closeTimeout = 10 * time.Second

// waitUntil waits for wg until deadline and reports whether it ended.
func waitUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(time.Until(deadline)):
		return false
	}
}

// begin registers an operation that uses the database; the caller must call
// s.ops.Done when finished.
func (s *Spool) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.live {
		return errNotOpen
	}
	s.ops.Add(1)
	return nil
}

// errNotOpen is returned while the store could not be opened yet for want
// of disk space (see diskLoop).
var errNotOpen = fmt.Errorf("%w (the store is not open yet)", ErrNoSpace)

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

// scan calls fn for each record of the key space prefix, in key order, with
// the iterator positioned on it, and stops at the first error fn returns
// (returned as is). what names the scan in errors of the iterator itself.
func (s *Spool) scan(prefix, what string, fn func(*pebble.Iterator) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("spool: %s: %w", what, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("spool: %s: %w", what, err)
	}
	return nil
}

// memTableSize is 16 MiB, or a quarter of a smaller reserve: a memtable is
// flushed to an sstable of about its size, and its WAL grows as large, so
// the reserve must hold both with room to spare.
func memTableSize(reserve int64) uint64 {
	const max, min = 16 << 20, 256 << 10
	if reserve <= 0 || reserve/4 >= max {
		return max
	}
	return uint64(maxInt(reserve/4, min))
}

// blockCacheSize is pebble's block cache: 16 MiB for blocks on top of room
// for two memtables. pebble reserves the memory of its memtables (the
// mutable one and those waiting to flush) in the block cache, so a cache no
// larger than them holds no block at all: with the former 8 MiB and 16 MiB
// memtables every Get read its index, filter and data blocks from the file
// (BenchmarkWorkerBacklog: 91,000 block cache misses and no hit per 20,000
// mails; with this size 13,600 misses, 77,000 hits).
func blockCacheSize(reserve int64) int64 {
	return 2*int64(memTableSize(reserve)) + 16<<20
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
