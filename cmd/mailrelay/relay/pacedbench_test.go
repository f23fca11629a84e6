package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
)

// BenchmarkIntakePaced is the open-loop run SNS makes: b.N signed
// notifications of 5 KB mails (S3 action) posted at 2,000/s whatever the
// answers take, into the real relay with its workers forwarding every mail
// through the S3 and SES stand-ins on the same cores. Latency is counted
// from the time each delivery was due, so a stall delays the ones behind it
// (no coordinated omission). Beside it a prober writes 4 KiB and fdatasyncs
// a file in the spool's directory every 5 ms: the disk's own sync latency
// in the same run. Reported: ack p50/p99, the fdatasync p50/p99, and CPU
// per mail: cpu-us/mail is the whole process's user+system CPU from the
// first delivery until the last mail reached SES, ÷ mails (it includes the
// load generator and the stand-ins); relay-cpu-us/mail is the relay's own
// share, from a CPU profile of the same interval whose samples are
// attributed by the goroutine label relaytest.RelayLabel (every goroutine
// the relay starts carries it: intake, spool, workers, their HTTP
// clients); gc-cpu-us/mail is the process's background garbage collection,
// which no label attributes (the relay's share of it is at most that).
// Run: go test -run '^$' -bench IntakePaced -benchtime 30000x ./cmd/mailrelay/relay
func BenchmarkIntakePaced(b *testing.B) {
	const rate = 2000
	h := newBenchHarness(b)
	mail := bytes.Repeat([]byte("x"), 5<<10)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		id := fmt.Sprintf("paced-%d", i)
		m := append(testMail(i), mail...)
		if err := h.Env.Put("ses-"+id, m); err != nil {
			b.Fatal(err)
		}
		bodies[i] = h.Env.Sign(id, h.Env.Received("ses-"+id, "shop@relay.example.com"))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	url := "http://" + h.Relay.InboundAddr + "/sns"
	// SNS gives up on a delivery after 15 s by default; so does this.
	client.Timeout = 15 * time.Second

	stopProbe := relaytest.StartProbeSync(h.Env.Dir)
	cpu0, cpuOK := relaytest.ProcessCPU()
	stopProfile := relayCPU()
	defer stopProfile()
	b.ResetTimer()
	lat, failed := relaytest.PostPaced(client, url, bodies, rate)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.SES.WaitSent(ctx, b.N); err != nil {
		b.Fatalf("forwarded %d of %d: %v", len(h.SES.Sent()), b.N, err)
	}
	b.StopTimer()
	cpu1, cpuOK1 := relaytest.ProcessCPU()
	relayCPU, gcCPU, profOK := stopProfile()
	sy, err := stopProbe()
	if err != nil {
		b.Error(err)
	}
	if failed > 0 {
		b.Fatalf("%d of %d deliveries not acknowledged", failed, b.N)
	}
	relaytest.ReportLatencies(b, lat, sy)
	if cpuOK && cpuOK1 {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-us/mail")
	}
	if profOK {
		b.ReportMetric(float64(relayCPU.Microseconds())/float64(b.N), "relay-cpu-us/mail")
		b.ReportMetric(float64(gcCPU.Microseconds())/float64(b.N), "gc-cpu-us/mail")
	}
}
