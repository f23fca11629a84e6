package relaytest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// StartProbeSync measures the disk's own sync latency while a benchmark
// runs beside it: ProbeSync in a goroutine until the returned stop is
// called, which returns its answer.
func StartProbeSync(dir string) (stop func() ([]time.Duration, error)) {
	done := make(chan struct{})
	type result struct {
		syncs []time.Duration
		err   error
	}
	out := make(chan result, 1)
	go func() {
		sy, err := ProbeSync(dir, done)
		out <- result{sy, err}
	}()
	return func() ([]time.Duration, error) {
		close(done)
		r := <-out
		return r.syncs, r.err
	}
}

// ProbeSync measures the disk's own sync latency while a benchmark runs
// beside it: every 5 ms (often enough for a p99 of a 15 s run, rarely
// enough not to double the syncs the relay itself waits for) it overwrites
// 4 KiB of a file (1 MiB) in a
// directory of its own under dir and fdatasyncs it, as the spool's commits
// do, until stop is closed; it returns the sorted latencies of the syncs.
// (A directory of its own: the relay watches the directory of its alias
// file, and a write every few ms there would cost the relay CPU.)
func ProbeSync(dir string, stop <-chan struct{}) ([]time.Duration, error) {
	pdir, err := os.MkdirTemp(dir, "fdatasync-probe-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(pdir)
	path := filepath.Join(pdir, "probe")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := bytes.Repeat([]byte("p"), 4096)
	var out []time.Duration
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for off := int64(0); ; off = (off + 4096) % (1 << 20) {
		select {
		case <-stop:
			slices.Sort(out)
			return out, nil
		case <-t.C:
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
}
