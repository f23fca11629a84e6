package spool

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Storage health: the disk-space reserve (a ballast file), the refusal of
// new entries while space is short, and the fail-closed state after a
// storage failure pebble cannot survive. See "Disk full" in the Spool doc.

const (
	// DefaultReserveBytes is the default Options.ReserveBytes.
	DefaultReserveBytes = 64 << 20
	// ballastName is the ballast file in the spool directory. pebble
	// ignores files whose names it does not know.
	ballastName = "mailrelay-ballast"
	// diskCheckInterval is how often free space is checked and the
	// ballast recreated once space has returned.
	diskCheckInterval = time.Second
)

// onDiskFull is called by the vfs.OnDiskFull wrapper when a write of
// pebble's fails with ENOSPC, while pebble's other writes wait: it frees the
// ballast, so that the write, retried once by the wrapper, succeeds, and
// makes Put refuse new entries until space returns. It must be quick.
func (s *Spool) onDiskFull() {
	s.noSpace.Store(true)
	released := false
	if s.reserve > 0 {
		err := s.fs.Remove(s.ballast)
		released = err == nil
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.storageLog.Error("removing the spool ballast", "err", err)
		}
	}
	s.storageLog.Error("spool disk full (ENOSPC): refusing new deliveries until space returns",
		"released_reserve", released, "reserve_bytes", s.reserve)
}

// checkDisk updates noSpace from the free space of the spool's file system
// and recreates the ballast when there is room for it and the reserve.
// Called by Open and diskLoop.
func (s *Spool) checkDisk() {
	if s.failed.Load() != nil {
		return
	}
	usage, uerr := s.fs.GetDiskUsage(s.dir)
	known := uerr == nil
	avail := int64(usage.AvailBytes)
	if s.reserve <= 0 {
		// No reserve: only a write that found the disk full stops intake,
		// until some space is free again.
		s.setNoSpace(known && avail < minFreeNoReserve, avail)
		return
	}
	_, serr := s.fs.Stat(s.ballast)
	present := serr == nil
	if !present && (!known || avail >= 2*s.reserve) {
		if err := s.makeBallast(); err != nil {
			s.storageLog.Warn("cannot create the spool ballast yet", "err", err, "reserve_bytes", s.reserve)
		} else {
			present = true
			if known {
				avail -= s.reserve
			}
		}
	}
	s.setNoSpace(!present || (known && avail < s.reserve), avail)
}

// minFreeNoReserve is the free space under which intake stops when the
// reserve is disabled (Options.ReserveBytes < 0).
const minFreeNoReserve = 1 << 20

// setNoSpace sets noSpace to low, logging the changes.
func (s *Spool) setNoSpace(low bool, avail int64) {
	if was := s.noSpace.Swap(low); was != low {
		if low {
			s.storageLog.Error("spool disk space below the reserve: refusing new deliveries",
				"avail_bytes", avail, "reserve_bytes", s.reserve)
		} else {
			s.log.Info("spool disk space back above the reserve: accepting deliveries",
				"avail_bytes", avail, "reserve_bytes", s.reserve)
		}
	}
}

// makeBallast allocates the ballast file (fallocate where supported, so it
// is quick and writes nothing) and syncs it.
func (s *Spool) makeBallast() (err error) {
	f, err := s.fs.Create(s.ballast, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = s.fs.Remove(s.ballast)
		}
	}()
	if err := f.Preallocate(0, s.reserve); err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("allocating %d bytes: %w", s.reserve, err)
		}
		// No fallocate here (EOPNOTSUPP on some file systems): write it.
		if err := writeZeros(f, s.reserve); err != nil {
			return fmt.Errorf("writing %d bytes: %w", s.reserve, err)
		}
	}
	return f.Sync()
}

// writeZeros writes n zero bytes to f.
func writeZeros(f vfs.File, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// diskLoop runs checkDisk every diskCheckInterval until Close, and opens
// the store once there is room if Open could not.
func (s *Spool) diskLoop() {
	defer s.bg.Done()
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.checkDisk()
		}
		s.mu.Lock()
		live := s.live
		s.mu.Unlock()
		if live || s.deferOpen() {
			continue
		}
		if err := s.openDB(); err != nil {
			s.storageLog.Error("spool still cannot open its store", "err", err)
		}
	}
}

// deferOpen reports whether opening pebble must wait for disk space: the
// ballast is gone and less than the reserve is free, so pebble's own
// writes at open (WAL, MANIFEST, a flush) could fail, fatally.
func (s *Spool) deferOpen() bool {
	if s.reserve <= 0 {
		return false
	}
	if _, err := s.fs.Stat(s.ballast); err == nil {
		return false
	}
	usage, err := s.fs.GetDiskUsage(s.dir)
	return err == nil && int64(usage.AvailBytes) < s.reserve
}

// isNoSpace reports whether err is the file system's "no space" (ENOSPC, or
// EDQUOT: over a quota).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// fatalPanic is what pebbleLogger.Fatalf panics with. commit recovers it;
// anywhere else (a pebble background goroutine) it ends the process.
type fatalPanic struct{ msg string }

// fail puts the spool in the fail-closed state (sticky): every write is
// refused with ErrStorage from now on, and Options.OnFatal is told once.
func (s *Spool) fail(err error) {
	s.mu.Lock()
	live := s.live
	s.mu.Unlock()
	if !live {
		return // opening: openDB returns the error
	}
	if !s.failed.CompareAndSwap(nil, &err) {
		return
	}
	s.log.Error("spool storage failed: refusing all writes; restart the process to recover (acknowledged entries are on disk)",
		"err", err)
	if s.onFatal != nil {
		go s.onFatal(err)
	}
}

// writable returns an error if a write must not reach pebble: after a
// storage failure (ErrStorage) or, when forIntake, while disk space is
// below the reserve (ErrNoSpace).
func (s *Spool) writable(forIntake bool) error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrStorage, *p)
	}
	if forIntake && s.noSpace.Load() {
		return ErrNoSpace
	}
	return nil
}

// Err reports why the spool refuses new entries for want of storage:
// ErrNoSpace while disk space is short (transient), an error wrapping
// ErrStorage after a storage failure (until the process restarts), nil
// when it can write. The bounds on entries are Full's.
func (s *Spool) Err() error { return s.writable(true) }

// commit commits b with opts, the one way the spool writes. A write error
// pebble treats as fatal (it calls Logger.Fatalf, which panics) is
// recovered here and puts the spool in the fail-closed state; a no-space
// error makes Put refuse new entries until checkDisk sees space again.
func (s *Spool) commit(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	if err := s.writable(false); err != nil {
		return err
	}
	defer func() {
		r := recover()
		if r == nil {
			if err != nil && isNoSpace(err) {
				s.noSpace.Store(true)
				err = fmt.Errorf("%w: %w", ErrNoSpace, err)
			}
			return
		}
		fp, ok := r.(fatalPanic)
		if !ok {
			panic(r)
		}
		err = fmt.Errorf("%w: %s", ErrStorage, fp.msg)
		s.fail(err)
	}()
	return b.Commit(opts)
}

// quotaFS reports EDQUOT (over a quota) from writes as ENOSPC, which is
// what pebble's vfs.OnDiskFull wrapper recognizes: over a quota, releasing
// the ballast (counted in the same quota) helps the same way.
type quotaFS struct{ vfs.FS }

func (fs quotaFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return quotaFile(fs.FS.Create(name, cat))
}

func (fs quotaFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return quotaFile(fs.FS.ReuseForWrite(oldname, newname, cat))
}

func (fs quotaFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return quotaFile(fs.FS.OpenReadWrite(name, cat, opts...))
}

func (fs quotaFS) Unwrap() vfs.FS { return fs.FS }

func quotaFile(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, asENOSPC(err)
	}
	return quotaWriter{f}, nil
}

type quotaWriter struct{ vfs.File }

func (f quotaWriter) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, asENOSPC(err)
}

func (f quotaWriter) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, asENOSPC(err)
}

func (f quotaWriter) Preallocate(off, n int64) error { return asENOSPC(f.File.Preallocate(off, n)) }
func (f quotaWriter) Sync() error                    { return asENOSPC(f.File.Sync()) }
func (f quotaWriter) SyncData() error                { return asENOSPC(f.File.SyncData()) }

func (f quotaWriter) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, asENOSPC(err)
}

// asENOSPC returns err, or, for EDQUOT, an error with its text whose
// innermost cause is ENOSPC.
func asENOSPC(err error) error {
	if err != nil && errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%v: %w", err, syscall.ENOSPC)
	}
	return err
}
