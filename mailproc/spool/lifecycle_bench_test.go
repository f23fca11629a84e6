package spool

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkLifecycleMem measures the CPU cost of one entry's whole life on
// an in-memory file system (no fsync cost): Put, Next, MarkSent, Retry,
// Next, DeadLetter, Redrive, Next, Complete. It isolates the code paths
// of the state changes from the disk.
func BenchmarkLifecycleMem(b *testing.B) {
	payload := []byte(strings.Repeat("x", 2048))
	s, err := Open("spool", Options{Logger: quietLogger(), fs: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
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
