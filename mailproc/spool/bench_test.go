package spool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncCountingFS counts Sync/SyncData calls on WAL files, to show that
// concurrent Puts share fsyncs.
type syncCountingFS struct {
	vfs.FS
	syncs atomic.Int64
}

func (fs *syncCountingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &syncCountingFile{File: f, n: &fs.syncs}, nil
}

func (fs *syncCountingFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(name, f, err)
}

func (fs *syncCountingFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.wrap(newname, f, err)
}

type syncCountingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f *syncCountingFile) Sync() error {
	f.n.Add(1)
	return f.File.Sync()
}

func (f *syncCountingFile) SyncData() error {
	f.n.Add(1)
	return f.File.SyncData()
}

// report adds acks/s, latency percentiles and WAL fsyncs per Put.
func report(b *testing.B, s *Spool, lat []time.Duration, elapsed time.Duration, syncs int64) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "acks/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(syncs)/float64(len(lat)), "fsyncs/put")
	b.ReportMetric(float64(s.stalls.Load()), "stalls")
}

func benchSpool(b *testing.B) (*Spool, *syncCountingFS) {
	fs := &syncCountingFS{FS: vfs.Default}
	s, err := Open(b.TempDir(), Options{MaxMessages: 1 << 30, MaxBytes: 1 << 40, Logger: quietLogger(), fs: fs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, fs
}

// BenchmarkPutSync measures durable Puts of ~2 KiB notifications from 1, 16
// and 64 concurrent callers.
func BenchmarkPutSync(b *testing.B) {
	payload := []byte(strings.Repeat("x", 2048))
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			s, fs := benchSpool(b)
			putClosedLoop(b, s, fs, conc, payload)
		})
	}
}

// BenchmarkPutWithWorkers measures Put latency from 16 callers while 4
// workers do what the relay does per message: Next, MarkSent, Complete
// (three more fsync'd writes per message sharing the WAL).
func BenchmarkPutWithWorkers(b *testing.B) {
	payload := []byte(strings.Repeat("x", 2048))
	const conc, workers = 16, 4
	s, fs := benchSpool(b)
	stop := startWorkers(b, s, workers)
	defer stop()
	putClosedLoop(b, s, fs, conc, payload)
	b.ReportMetric(float64(s.Stats().Messages), "backlog")
}

// putClosedLoop has conc callers Put b.N entries between them, each
// putting its next as soon as the previous is stored, and reports the rates
// and latencies.
func putClosedLoop(b *testing.B, s *Spool, fs *syncCountingFS, conc int, payload []byte) {
	var next atomic.Int64
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	b.ResetTimer()
	syncs0 := fs.syncs.Load()
	start := time.Now()
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if _, err := s.Put(context.Background(), Entry{ID: fmt.Sprintf("m%d", i), Payload: payload}); err != nil {
					b.Error(err)
					return
				}
				lats[g] = append(lats[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	report(b, s, slices.Concat(lats...), elapsed, fs.syncs.Load()-syncs0)
}

// startWorkers runs n consumers doing what the relay does per message:
// Next, MarkSent, Complete (three fsync'd writes per message, sharing the
// WAL with Puts). Stop them with the returned function.
func startWorkers(b *testing.B, s *Spool, n int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				e, err := s.Next(ctx)
				if err != nil {
					return
				}
				if err := s.MarkSent(e.ID, "dest", "ses-id"); err != nil {
					b.Error(err)
					return
				}
				if err := s.Complete(e.ID); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// BenchmarkPutPaced is open-loop: Puts arrive at a fixed 2,000/s (the target
// rate), each in its own goroutine as an HTTP handler would, with 0 or 4
// workers draining the spool. Latency is measured from the scheduled arrival
// time, so a stall counts against every request that should have started
// during it; p99_put_only_ms leaves out the wait for the goroutine to run.
func BenchmarkPutPaced(b *testing.B) {
	for _, workers := range []int{0, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchPaced(b, 2000, workers)
		})
	}
}

func benchPaced(b *testing.B, rate, workers int) {
	payload := []byte(strings.Repeat("x", 2048))
	s, fs := benchSpool(b)
	if workers > 0 {
		stop := startWorkers(b, s, workers)
		defer stop()
	}
	lat := make([]time.Duration, b.N)
	putLat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	syncs0 := fs.syncs.Load()
	start := time.Now()
	for i := range b.N {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if _, err := s.Put(context.Background(), Entry{ID: fmt.Sprintf("m%d", i), Payload: payload}); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(due)
			putLat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	report(b, s, lat, elapsed, fs.syncs.Load()-syncs0)
	slices.Sort(putLat)
	b.ReportMetric(float64(putLat[min(len(putLat)-1, len(putLat)*99/100)].Microseconds())/1000, "p99_put_only_ms")
}
