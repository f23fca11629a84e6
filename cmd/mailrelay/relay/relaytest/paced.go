package relaytest

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// PostPaced is an open-loop sender, as SNS is: it posts bodies[i] to url
// at start + i/rate whatever the answers take, each in a goroutine of its
// own, and returns once every post is answered. lat[i] is the time from
// when delivery i was due until its answer, so a stall delays the ones
// behind it (no coordinated omission); failed counts the posts that got
// no answer or one other than 200.
func PostPaced(client *http.Client, url string, bodies [][]byte, rate int) (lat []time.Duration, failed int) {
	lat = make([]time.Duration, len(bodies))
	var nfailed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range bodies {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(due))
		wg.Go(func() {
			if !PostOK(client, url, bodies[i]) {
				nfailed.Add(1)
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	return lat, int(nfailed.Load())
}

// PostOK posts body to url as SNS does and reads the whole answer; it
// reports whether the answer was a 200.
func PostOK(client *http.Client, url string, body []byte) bool {
	resp, err := client.Post(url, "text/plain; charset=UTF-8", bytes.NewReader(body))
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ReportLatencies reports the acknowledgements' p50/p99 (lat, sorted
// here) and the disk's fdatasync p50/p99 (sy, sorted; none if the probe
// failed) in milliseconds.
func ReportLatencies(b *testing.B, lat, sy []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(QuantileMS(lat, 0.50), "p50-ms")
	b.ReportMetric(QuantileMS(lat, 0.99), "p99-ms")
	if len(sy) > 0 {
		b.ReportMetric(QuantileMS(sy, 0.50), "fdatasync-p50-ms")
		b.ReportMetric(QuantileMS(sy, 0.99), "fdatasync-p99-ms")
	}
}

// QuantileMS is the q-quantile of sorted d in milliseconds.
func QuantileMS(d []time.Duration, q float64) float64 {
	return float64(d[min(len(d)-1, int(q*float64(len(d))))].Microseconds()) / 1000
}

// ProcessCPU is the CPU time (user + system) this process has used.
func ProcessCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
