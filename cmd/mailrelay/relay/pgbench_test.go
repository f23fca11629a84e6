package relay_test

import (
	"fmt"
	"testing"

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
			runIntake(b, senders, bodies, func(i int) string { return "http://" + hs[i%replicas].Relay.InboundAddr + "/sns" }, func() int {
				n := 0
				for _, h := range hs {
					n += len(h.SES.Sent())
				}
				return n
			})
		})
	}
}
