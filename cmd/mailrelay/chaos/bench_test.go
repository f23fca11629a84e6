package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
)

// BenchmarkPacedBinary is BenchmarkIntakePaced (cmd/mailrelay/relay) with
// the relay in a process of its own, the built binary with its defaults
// (8 workers, the spool): b.N signed notifications of 5 KB mails (S3
// action) posted at 2,000/s whatever the answers take, the S3 and SES
// stand-ins and the load generator in the benchmark's process on the same
// cores. So the relay's CPU per mail is its process's user+system CPU time
// (from /proc) between the first delivery and the last mail reaching SES, ÷
// mails: no attribution by labels, the relay's garbage collection
// included. Also reported: ack p50/p99 counted from each delivery's due
// time (no coordinated omission), served-p50/p99 the relay's own
// measure of the same answers (mailrelay_ack_duration_seconds, from
// reading the request to answering it, interpolated in its buckets: what
// is not in it is the time on the wire and in the queues for a CPU on
// either side), the disk's fdatasync p50/p99 probed in
// the spool's directory during the run, the benchmark process's CPU per
// mail (load generator and stand-ins) and the relay's peak RSS.
//
//	go test -run '^$' -bench PacedBinary -benchtime 30000x ./cmd/mailrelay/chaos
//
// RELAY_BENCH_RATE changes the rate; RELAY_BENCH_ENV adds relay settings
// (space-separated NAME=value).
func BenchmarkPacedBinary(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads the relay's CPU time from /proc")
	}
	rate := 2000
	if v := os.Getenv("RELAY_BENCH_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("RELAY_BENCH_RATE=%q: want a positive number", v)
		}
		rate = n
	}
	dir := b.TempDir()
	// An account far above the rate (the stand-in reports 1,000/s without
	// one, and the relay keeps to it): "fast SES".
	st := newStage(b, dir, fakes.SESOptions{Quota: fakes.Quota{MaxSendRate: 50000}})
	r := &relayProc{t: b, bin: st.bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(b), health: freeAddr(b)}
	spoolDir := filepath.Join(dir, "spool")
	r.env = relayEnv(st.home, r, st.s3.URL(), st.ses.URL(), st.certPrefix, spoolDir, st.aliasFile,
		"RELAY_WORKERS=8", "RELAY_LOG_LEVEL=warn")
	r.env = append(r.env, strings.Fields(os.Getenv("RELAY_BENCH_ENV"))...)
	if err := r.start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGTERM, 10*time.Second) }()
	r.waitReady()

	pad := bytes.Repeat([]byte("x"), 5<<10)
	bodies := make([][]byte, b.N)
	var sign sync.WaitGroup
	for w := range 2 {
		sign.Go(func() {
			for i := w; i < b.N; i += 2 {
				key := fmt.Sprintf("inbound/paced-%d", i)
				if err := st.s3.Put(bucket, key, append(mailFor(i), pad...)); err != nil {
					b.Error(err)
					return
				}
				bodies[i] = st.signer.Notification(topic, fmt.Sprintf("sns-paced-%d", i), "Amazon SES Email Receipt Notification",
					receivedS3(fmt.Sprintf("ses-paced-%d", i), key), "2")
			}
		})
	}
	sign.Wait()
	if b.Failed() {
		return
	}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	url := "http://" + r.inbound + "/sns"
	pid := r.cmd.Process.Pid

	stopProbe := relaytest.StartProbeSync(dir)
	before := r.sample(b, pid)
	b.ResetTimer()
	lat, failed := relaytest.PostPaced(client, url, bodies, rate)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := st.ses.WaitSent(ctx, b.N); err != nil {
		b.Fatalf("forwarded %d of %d: %v; log:\n%s", len(st.ses.Sent()), b.N, err, r.logTail())
	}
	b.StopTimer()
	after := r.sample(b, pid)
	sy, err := stopProbe()
	if err != nil {
		b.Error(err)
	}
	if failed > 0 {
		b.Fatalf("%d of %d deliveries not acknowledged", failed, b.N)
	}
	if got := countIDs(st.ses.Sent()); got != b.N {
		b.Fatalf("%d distinct mails forwarded, want %d", got, b.N)
	}
	relaytest.ReportLatencies(b, lat, sy)
	served := after.acks.minus(before.acks)
	b.ReportMetric(served.quantile(0.50)*1000, "served-p50-ms")
	b.ReportMetric(served.quantile(0.99)*1000, "served-p99-ms")
	b.ReportMetric(float64((after.relayCPU-before.relayCPU).Microseconds())/float64(b.N), "relay-cpu-us/mail")
	b.ReportMetric(float64((after.selfCPU-before.selfCPU).Microseconds())/float64(b.N), "harness-cpu-us/mail")
	if hwm, err := procHWM(pid); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "relay-rss-peak-MiB")
	}
}

// benchSample is what BenchmarkPacedBinary reads before and after the
// load: the relay's CPU time and acknowledgement histogram, and this
// process's CPU time (the load generator's and the stand-ins').
type benchSample struct {
	relayCPU, selfCPU time.Duration
	acks              histogram
}

func (r *relayProc) sample(b *testing.B, pid int) benchSample {
	cpu, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	acks, err := r.histogram("mailrelay_ack_duration_seconds")
	if err != nil {
		b.Fatal(err)
	}
	self, _ := relaytest.ProcessCPU()
	return benchSample{relayCPU: cpu, selfCPU: self, acks: acks}
}

// clockTick is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux the relay runs on).
const clockTick = 10 * time.Millisecond

// procCPU is the user+system CPU time process pid has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): state is the 3rd field, utime the 14th, stime the 15th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

// procHWM is process pid's peak resident set size in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// histogram is a Prometheus histogram as scraped: cumulative counts per
// upper bound, in ascending order of bound.
type histogram struct {
	le     []float64
	counts []float64
}

// histogram scrapes the relay's histogram name (unlabelled) from /metrics.
func (r *relayProc) histogram(name string) (histogram, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + r.health + "/metrics")
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return histogram{}, err
	}
	var h histogram
	prefix := name + `_bucket{le="`
	for line := range strings.Lines(string(body)) {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		bound, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			return histogram{}, fmt.Errorf("%s: bad bucket line %q", name, line)
		}
		le, err1 := strconv.ParseFloat(bound, 64)
		if bound == "+Inf" {
			le, err1 = math.Inf(1), nil
		}
		n, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err1 != nil || err2 != nil {
			return histogram{}, fmt.Errorf("%s: bad bucket line %q", name, line)
		}
		h.le, h.counts = append(h.le, le), append(h.counts, n)
	}
	if len(h.le) == 0 {
		return histogram{}, fmt.Errorf("%s: no buckets in /metrics", name)
	}
	return h, nil
}

// minus is the observations of h not in earlier (a scrape of the same
// histogram before h).
func (h histogram) minus(earlier histogram) histogram {
	out := histogram{le: h.le, counts: slices.Clone(h.counts)}
	for i := range out.counts {
		if i < len(earlier.counts) {
			out.counts[i] -= earlier.counts[i]
		}
	}
	return out
}

// quantile estimates the q-quantile in seconds as Prometheus's
// histogram_quantile does: linear within the bucket it falls in (the
// bound below the first bucket is 0; in the +Inf bucket, the largest
// finite bound).
func (h histogram) quantile(q float64) float64 {
	total := h.counts[len(h.counts)-1]
	if total == 0 {
		return 0
	}
	rank := q * total
	for i, c := range h.counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.le[i], 1) {
			return h.le[max(0, i-1)]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.le[i-1], h.counts[i-1]
		}
		if c == below {
			return h.le[i]
		}
		return lo + (h.le[i]-lo)*(rank-below)/(c-below)
	}
	return h.le[len(h.le)-1]
}
