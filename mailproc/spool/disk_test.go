package spool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// injector fails the matching file operations with err while armed: once
// (shots 1) or until disarmed (shots < 0).
type injector struct {
	mu    sync.Mutex
	match func(errorfs.Op) bool
	err   error
	shots int
	hits  int
}

func (in *injector) MaybeError(op errorfs.Op) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.shots == 0 || in.match == nil || !in.match(op) {
		return nil
	}
	in.hits++
	if in.shots > 0 {
		in.shots--
	}
	return in.err
}

func (in *injector) String() string { return "test injector" }

func (in *injector) arm(match func(errorfs.Op) bool, err error, shots int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.match, in.err, in.shots, in.hits = match, err, shots, 0
}

func (in *injector) disarm() (hits int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.shots = 0
	return in.hits
}

func isWrite(k errorfs.OpKind) bool {
	switch k {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate:
		return true
	}
	return false
}

func isSync(k errorfs.OpKind) bool {
	switch k {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo, errorfs.OpFileFlush:
		return true
	}
	return false
}

// onFile matches the operations of kind on files whose name contains
// suffix. A recycled WAL (errFS.ReuseForWrite) has no path: ".log" matches it.
func onFile(suffix string, kind func(errorfs.OpKind) bool) func(errorfs.Op) bool {
	return func(op errorfs.Op) bool {
		return kind(op.Kind) && (strings.Contains(op.Path, suffix) || suffix == ".log" && op.Path == "")
	}
}

// errFS is errorfs.FS, whose ReuseForWrite (pebble recycling a WAL file)
// returns the file unwrapped, with the recycled files wrapped too.
type errFS struct {
	*errorfs.FS
	inj errorfs.Injector
}

func newErrFS(fs vfs.FS, inj errorfs.Injector) errFS { return errFS{errorfs.Wrap(fs, inj), inj} }

func (fs errFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	if err != nil {
		return nil, err
	}
	return errorfs.WrapFile(f, fs.inj), nil
}

// TestDiskFull injects ENOSPC (and EDQUOT) into the writes and syncs of
// pebble's WAL, sstables and MANIFEST, and checks the spool's answer:
//   - a single failure is absorbed by releasing the ballast: the write in
//     progress succeeds, then Put refuses new entries with ErrNoSpace (an
//     ErrFull: 503) and Full/Err report it, until space returns (the
//     ballast can be recreated), when Puts resume;
//   - a lasting failure of the WAL (pebble cannot continue after a failed
//     WAL write or sync) fails the spool closed: Put returns ErrStorage,
//     nothing panics, OnFatal is told once, Next hands out nothing and
//     Close ends; a reopen finds every acknowledged entry.
//
// Each case runs with a reserve and with none (ReserveBytes < 0): the
// injected single failures are retried once by pebble's ENOSPC wrapper
// either way; the ballast matters on a real disk, where the retry needs the
// space it frees (cmd/mailrelay/chaos TestDiskFull).
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match func(errorfs.Op) bool
		err   error
		shots int
		flush bool // force a flush (sstable and MANIFEST writes)
		fatal bool // the spool must fail closed
	}{
		{name: "wal write once", match: onFile(".log", isWrite), err: syscall.ENOSPC, shots: 1},
		// A failed fsync is never retried (what it lost is unknown): fatal.
		{name: "wal sync once", match: onFile(".log", isSync), err: syscall.ENOSPC, shots: 1, fatal: true},
		{name: "sstable write once", match: onFile(".sst", isWrite), err: syscall.ENOSPC, shots: 1, flush: true},
		{name: "manifest write once", match: onFile("MANIFEST", isWrite), err: syscall.ENOSPC, shots: 1, flush: true},
		{name: "wal write lasting", match: onFile(".log", isWrite), err: syscall.ENOSPC, shots: -1, fatal: true},
		{name: "wal sync lasting", match: onFile(".log", isSync), err: syscall.ENOSPC, shots: -1, fatal: true},
		{name: "wal write quota once", match: onFile(".log", isWrite), err: syscall.EDQUOT, shots: 1},
		{name: "sstable write quota once", match: onFile(".sst", isWrite), err: syscall.EDQUOT, shots: 1, flush: true},
		{name: "wal write quota lasting", match: onFile(".log", isWrite), err: syscall.EDQUOT, shots: -1, fatal: true},
	} {
		for _, reserve := range []int64{1 << 20, -1} {
			t.Run(fmt.Sprintf("%s/reserve=%d", tc.name, reserve), func(t *testing.T) {
				mem := vfs.NewMem()
				inj := &injector{}
				var fatals atomic.Int32
				opts := Options{ReserveBytes: reserve, Logger: quietLogger(),
					OnFatal: func(error) { fatals.Add(1) }, fs: newErrFS(mem, inj)}
				s, err := Open("spool", opts)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				acked := map[string]bool{}
				put := func(id string) error {
					dup, err := s.Put(ctx, entry(id, strings.Repeat("x", 100)))
					if err == nil && !dup {
						acked[id] = true
					}
					return err
				}
				for i := range 3 {
					if err := put(fmt.Sprintf("before%d", i)); err != nil {
						t.Fatal(err)
					}
				}
				inj.arm(tc.match, tc.err, tc.shots)
				var perr error
				for i := 0; i < 5 && perr == nil; i++ {
					perr = put(fmt.Sprintf("during%d", i))
					if tc.flush && perr == nil {
						if err := s.db.Flush(); err != nil {
							t.Logf("flush: %v", err)
						}
					}
				}
				if perr == nil {
					t.Fatal("no Put failed while the disk was full")
				}
				if s.Err() == nil || !s.Full() {
					t.Fatalf("after %v: Err %v, Full %v; want unhealthy", perr, s.Err(), s.Full())
				}
				if hits := inj.disarm(); hits == 0 {
					t.Fatal("injection never hit")
				}
				if tc.fatal {
					if !errors.Is(perr, ErrStorage) || !errors.Is(s.Err(), ErrStorage) {
						t.Fatalf("put: %v, Err %v; want ErrStorage", perr, s.Err())
					}
					if err := put("after"); !errors.Is(err, ErrStorage) {
						t.Fatalf("put after the failure: %v", err)
					}
					if _, err := nextWithin(t, s, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("next after the failure: %v; want nothing handed out", err)
					}
					deadline := time.Now().Add(2 * time.Second)
					for fatals.Load() != 1 && time.Now().Before(deadline) {
						time.Sleep(10 * time.Millisecond)
					}
					if n := fatals.Load(); n != 1 {
						t.Fatalf("OnFatal called %d times", n)
					}
				} else {
					if !errors.Is(perr, ErrNoSpace) || !errors.Is(perr, ErrFull) || !errors.Is(s.Err(), ErrNoSpace) {
						t.Fatalf("put: %v, Err %v; want ErrNoSpace", perr, s.Err())
					}
					// Space is back: the next check recreates the ballast.
					s.checkDisk()
					if err := s.Err(); err != nil || s.Full() {
						t.Fatalf("after space returned: Err %v, Full %v", err, s.Full())
					}
					if err := put("after"); err != nil {
						t.Fatalf("put after space returned: %v", err)
					}
				}
				start := time.Now()
				cerr := s.Close()
				if d := time.Since(start); d > closeTimeout+time.Second {
					t.Fatalf("close took %v", d)
				}
				t.Logf("close: %v", cerr)

				// Every acknowledged entry is there after a reopen.
				opts.fs = mem
				if tc.fatal && cerr != nil {
					// pebble was abandoned with its lock held: reopen a copy,
					// as a new process would find the directory.
					opts.fs = copyFS(t, mem, "spool")
				}
				s2, err := Open("spool", opts)
				if err != nil {
					t.Fatal(err)
				}
				defer s2.Close()
				for id := range acked {
					if dup, err := s2.Put(ctx, entry(id, "again")); !dup || err != nil {
						t.Errorf("acknowledged %s lost after reopen: dup %v, err %v", id, dup, err)
					}
				}
			})
		}
	}
}

// copyFS copies dir of src into a new MemFS.
func copyFS(t *testing.T, src vfs.FS, dir string) vfs.FS {
	t.Helper()
	dst := vfs.NewMem()
	if err := dst.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	names, err := src.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := vfs.CopyAcrossFS(src, src.PathJoin(dir, n), dst, dst.PathJoin(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestDiskFullConcurrent fails the WAL for good under concurrent Puts (group
// commits in flight when the failure comes): no panic escapes, every Put
// ends with nil or an error, and what was acknowledged survives a reopen.
func TestDiskFullConcurrent(t *testing.T) {
	mem := vfs.NewMem()
	inj := &injector{}
	opts := Options{ReserveBytes: 1 << 20, Logger: quietLogger(), fs: newErrFS(mem, inj)}
	s, err := Open("spool", opts)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				dup, err := s.Put(ctx, entry(id, "x"))
				if err != nil {
					return
				}
				if !dup {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	inj.arm(onFile(".log", isWrite), syscall.ENOSPC, -1)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("Puts did not end after the WAL failed")
	}
	if !errors.Is(s.Err(), ErrStorage) {
		t.Fatalf("Err %v, want ErrStorage", s.Err())
	}
	t.Logf("close: %v; %d acknowledged", s.Close(), len(acked))
	opts.fs = copyFS(t, mem, "spool")
	s2, err := Open("spool", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, id := range acked {
		if dup, err := s2.Put(context.Background(), entry(id, "again")); !dup || err != nil {
			t.Fatalf("acknowledged %s lost: dup %v, err %v", id, dup, err)
		}
	}
}

// TestOpenOnFullDisk checks that Open on a disk without room for pebble's
// own writes (ballast gone, less than the reserve free) does not open the
// store, which could fail fatally, but returns a spool that refuses
// deliveries (ErrNoSpace, Full) and hands out nothing, and opens the store
// with every entry once space returns.
func TestOpenOnFullDisk(t *testing.T) {
	mem := vfs.NewMem()
	opts := Options{ReserveBytes: 1 << 20, Logger: quietLogger(), fs: mem}
	s, err := Open("spool", opts)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, entry("a", "1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mem.Remove("spool/" + ballastName); err != nil {
		t.Fatal(err)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1000, TotalBytes: 16 << 20, UsedBytes: 16<<20 - 1000})

	s, err = Open("spool", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Put(context.Background(), entry("b", "2")); !errors.Is(err, ErrNoSpace) || !errors.Is(err, ErrFull) {
		t.Fatalf("put on a full disk: %v", err)
	}
	if !errors.Is(s.Err(), ErrNoSpace) || !s.Full() {
		t.Fatalf("Err %v, Full %v", s.Err(), s.Full())
	}
	if _, err := nextWithin(t, s, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next on a full disk: %v", err)
	}
	if _, err := s.DeadLetters(0); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("dead letters on a full disk: %v", err)
	}

	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 2 << 30, UsedBytes: 1 << 30})
	deadline := time.Now().Add(10 * time.Second)
	for s.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not open 10s after space returned: %v", s.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e := mustNext(t, s); e.ID != "a" {
		t.Fatalf("next: %q, want a", e.ID)
	}
	mustPut(t, s, entry("b", "2"))
	if st := s.Stats(); st.Messages != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBallastWithoutFallocate checks that the ballast is written when the
// file system has no fallocate, rather than never created (which would
// refuse every delivery).
func TestBallastWithoutFallocate(t *testing.T) {
	mem := vfs.NewMem()
	inj := &injector{}
	inj.arm(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFilePreallocate }, syscall.EOPNOTSUPP, -1)
	s, err := Open("spool", Options{ReserveBytes: 3<<20 + 5, Logger: quietLogger(), fs: newErrFS(mem, inj)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Err(); err != nil {
		t.Fatalf("Err %v", err)
	}
	fi, err := mem.Stat("spool/" + ballastName)
	if err != nil || fi.Size() != 3<<20+5 {
		t.Fatalf("ballast: %v, %v", fi, err)
	}
	mustPut(t, s, entry("a", "1"))
}
