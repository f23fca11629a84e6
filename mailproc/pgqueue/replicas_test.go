package pgqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/pace"
	"github.com/mailrelay/mailrelay/mailproc/pgqueue"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

var _ pace.Peers = (*pgqueue.Queue)(nil)

// eventually polls q.Peers until it answers want, bounded.
func eventually(t *testing.T, q *pgqueue.Queue, want int, what string) {
	t.Helper()
	var got int
	var err error
	for range 100 {
		if got, err = q.Peers(context.Background()); err == nil && got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %s.Peers = %d, %v; want %d", what, q.Replica(), got, err, want)
}

// Live replicas are counted through the database: a replica that starts
// counts at once, one that stops gracefully stops counting at once, one
// that dies stops counting when its lease (three heartbeats) has passed.
func TestPeers(t *testing.T) {
	url := pgtest.NewDatabase(t)
	o := pgqueue.Options{Lease: time.Second}
	a := replica(t, url, "a", o)
	eventually(t, a, 1, "alone")
	b := replica(t, url, "b", o)
	c := replica(t, url, "c", o)
	steps := []struct {
		what string
		do   func()
		want int
	}{
		{"three started", func() {}, 3},
		{"c stopped gracefully", func() { _ = c.Close() }, 2},
		{"b killed, its lease passed", b.Crash, 1},
		{"b back under the same id", func() { replica(t, url, "b", o) }, 2},
	}
	for _, s := range steps {
		s.do()
		eventually(t, a, s.want, s.what)
	}
}
