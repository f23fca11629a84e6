package relay_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// BenchmarkIntakePostgres is BenchmarkIntake with the queue in PostgreSQL
// (--database-url), for one and two replicas sharing one database: a
// throw-away server from pgtest on this machine's disk, with fsync on and
// synchronous_commit on, so that an acknowledgement pays for a WAL flush as
// the spool's pays for its fsync.
// 16 senders spread over the replicas, each posting signed deliveries to
// its replica; then the workers of every replica drain the shared queue.
// Reported: acks/s, ack p50/p99 as the sender sees it, and end-to-end
// mails/s (the first post to the last copy SES accepted). Run:
// go test -run '^$' -bench IntakePostgres ./cmd/mailrelay/relay
func BenchmarkIntakePostgres(b *testing.B) {
	const senders = 16
	b.Setenv(pgtest.FsyncEnv, "on")
	srv := pgtest.StartPrivate(b)
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			url := srv.NewDatabase(b)
			hs := make([]*harness, replicas)
			for i := range hs {
				hs[i] = newHarness(b, func(c *config.Config) { c.DatabaseURL = url })
			}
			bodies := make([][]byte, b.N)
			for i := range bodies {
				h := hs[i%replicas]
				id := fmt.Sprintf("pgbench-%d-%d", replicas, i)
				bodies[i] = h.Signer.Notification(testTopic, id, "Amazon SES Email Receipt Notification",
					receivedInline("ses-"+id, testMail(i), []string{"shop@relay.example.com"}), "2")
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}}
			lat := make([]time.Duration, b.N)
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range senders {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						t0 := time.Now()
						resp, err := client.Post("http://"+hs[i%replicas].Relay.InboundAddr+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(bodies[i]))
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						lat[i] = time.Since(t0)
						if resp.StatusCode != http.StatusOK {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			acked := time.Since(start)
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d of %d deliveries not acknowledged", f, b.N)
			}
			sent := func() int {
				n := 0
				for _, h := range hs {
					n += len(h.SES.Sent())
				}
				return n
			}
			deadline := time.Now().Add(2 * time.Minute)
			for sent() < b.N {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d forwarded within 2 minutes", sent(), b.N)
				}
				time.Sleep(5 * time.Millisecond)
			}
			forwarded := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/acked.Seconds(), "acks/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(b.N)/forwarded.Seconds(), "mails/s")
			if s := sent(); s != b.N {
				b.Errorf("%d copies sent for %d mails", s, b.N)
			}
		})
	}
}
