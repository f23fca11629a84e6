package relay_test

import (
	"bytes"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/google/pprof/profile"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
)

// relayCPU profiles the process (100 samples per second of CPU) from
// start until the returned stop is called, which returns the CPU time of
// the relay's own goroutines (those labelled relaytest.RelayLabel) and the
// background garbage collection of the whole process (runtime.gcBgMarkWorker,
// which no label attributes to the goroutines that allocated). ok is false
// when a profile is already running (go test -cpuprofile). Call stop at
// least once (defer it: a benchmark that fails must not leave the profile
// running for the next); calls after the first return ok false. With
// MAILRELAY_BENCH_PROFILE set, the profile is also written to that file
// (go tool pprof -tagfocus relay=relay reads the relay's share).
func relayCPU() (stop func() (relay, gc time.Duration, ok bool)) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return func() (time.Duration, time.Duration, bool) { return 0, 0, false }
	}
	stopped := false
	return func() (relay, gc time.Duration, ok bool) {
		if stopped {
			return 0, 0, false
		}
		stopped = true
		pprof.StopCPUProfile()
		if path := os.Getenv("MAILRELAY_BENCH_PROFILE"); path != "" {
			_ = os.WriteFile(path, buf.Bytes(), 0o644)
		}
		p, err := profile.Parse(&buf)
		if err != nil {
			return 0, 0, false
		}
		cpu := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" })
		if cpu < 0 {
			return 0, 0, false
		}
		for _, s := range p.Sample {
			d := time.Duration(s.Value[cpu])
			switch {
			case inGCWorker(s):
				gc += d
			case slices.Contains(s.Label[relaytest.RelayLabel], relaytest.RelayLabel):
				relay += d
			}
		}
		return relay, gc, true
	}
}

func inGCWorker(s *profile.Sample) bool {
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil && l.Function.Name == "runtime.gcBgMarkWorker" {
				return true
			}
		}
	}
	return false
}
