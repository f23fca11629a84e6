package spool

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// memSpool opens a spool on an in-memory file system (no fsync cost),
// closed when the benchmark ends.
func memSpool(b *testing.B) *Spool {
	s, err := Open("spool", Options{Logger: quietLogger(), fs: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkLifecycleMem measures the CPU cost of one entry's whole life on
// an in-memory file system (no fsync cost): Put, Next, MarkSent, Retry,
// Next, DeadLetter, Redrive, Next, Complete. It isolates the code paths
// of the state changes from the disk.
func BenchmarkLifecycleMem(b *testing.B) {
	payload := []byte(strings.Repeat("x", 2048))
	s := memSpool(b)
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	next := func(want string) {
		e, err := s.Next(ctx)
		must(err)
		if e.ID != want {
			b.Fatalf("next: %q, want %q", e.ID, want)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("m%d", i)
		_, err := s.Put(ctx, Entry{ID: id, Payload: payload})
		must(err)
		next(id)
		must(s.MarkSent(id, "dest", "ses-id"))
		must(s.Retry(id, time.Time{}, "again"))
		next(id)
		must(s.DeadLetter(id, "gave up"))
		_, err = s.Redrive(id)
		must(err)
		next(id)
		must(s.Complete(id))
	}
}

// BenchmarkWorkerBacklog measures the CPU cost of one mail as the relay
// handles it with a backlog: Put (the acknowledgement), then Next,
// MarkSent and Complete of the oldest entry, with backlog entries always
// pending, on an in-memory file system. The backlog (~9 MiB of records)
// and the rewrites make pebble flush its memtable, so the entries a worker
// reads are mostly in sstables, as in a relay behind on its intake.
func BenchmarkWorkerBacklog(b *testing.B) {
	const backlog = 4000
	payload := []byte(strings.Repeat("x", 2048))
	s := memSpool(b)
	ctx := context.Background()
	put := func(i int) {
		if _, err := s.Put(ctx, Entry{ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range backlog {
		put(i)
	}
	b.ReportAllocs()
	for i := backlog; b.Loop(); i++ {
		put(i)
		e, err := s.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.MarkSent(e.ID, "dest", "ses-id"); err != nil {
			b.Fatal(err)
		}
		if err := s.Complete(e.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if testing.Verbose() {
		m := s.db.Metrics()
		b.Logf("filter %+v\nblock cache %+v\nfile cache %+v\n%s", m.Filter, m.BlockCache, m.FileCache, m)
	}
	if n := s.Stats().Messages; n != backlog {
		b.Fatalf("backlog %d, want %d", n, backlog)
	}
}
