package relay_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// receivedInline is an SES "Received" notification carrying the mail itself
// (the SNS action), so the intake benchmark needs no S3 objects.
func receivedInline(sesID string, mail []byte, recipients []string) string {
	n := sesnotify.Received(sesID, time.Now(), recipients,
		sesnotify.Action{Type: sesnotify.ActionSNS, TopicArn: testTopic, Encoding: sesnotify.EncodingBase64}).Pass()
	n.Content = base64.StdEncoding.EncodeToString(mail)
	return string(n.JSON())
}

// BenchmarkIntake measures acknowledgements through the real relay: signed
// SNS deliveries posted over loopback HTTP by concurrent senders, each
// answered 200 only after its fsync'd spool write, while the workers forward
// the mail to the SES stand-in. Reported: acks/s and ack latency p50/p99 as
// the sender sees it, and end-to-end mails/s (the first post to the last
// copy SES accepted). Run: go test -run '^$' -bench Intake ./relay
func BenchmarkIntake(b *testing.B) {
	for _, senders := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			h := newBenchHarness(b)
			bodies := make([][]byte, b.N)
			for i := range bodies {
				id := fmt.Sprintf("bench-%d-%d", senders, i)
				bodies[i] = h.Signer.Notification(testTopic, id, "Amazon SES Email Receipt Notification",
					receivedInline("ses-"+id, testMail(i), []string{"shop@relay.example.com"}), "2")
			}
			url := "http://" + h.Relay.InboundAddr + "/sns"
			runIntake(b, senders, bodies, func(int) string { return url }, func() int { return len(h.SES.Sent()) })
		})
	}
}

// runIntake posts bodies[i] to url(i) from senders concurrent senders (the
// benchmark's timer runs from the first post), waits (at most 2 minutes)
// until sent() reports every mail forwarded, and reports mails/s end to
// end, acks/s, and the ack latency p50/p99 as the senders saw it.
func runIntake(b *testing.B, senders int, bodies [][]byte, url func(i int) string, sent func() int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}}
	lat := make([]time.Duration, len(bodies))
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range senders {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					return
				}
				t0 := time.Now()
				if !relaytest.PostOK(client, url(i), bodies[i]) {
					failed.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	acked := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d deliveries not acknowledged", f, len(bodies))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for sent() < len(bodies) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d forwarded within 2 minutes", sent(), len(bodies))
		}
		time.Sleep(5 * time.Millisecond)
	}
	forwarded := time.Since(start)
	b.StopTimer()
	if s := sent(); s != len(bodies) {
		b.Errorf("%d copies sent for %d mails", s, len(bodies))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(bodies))/forwarded.Seconds(), "mails/s")
	b.ReportMetric(float64(len(bodies))/acked.Seconds(), "acks/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
