package incident

import (
	"fmt"
	"github.com/mailrelay/mailrelay/awsclient"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// Answers counts the relay's answers to delivery attempts.
type Answers struct {
	OK                 int // 200
	ServiceUnavailable int // 503
	Other5xx           int
	Status4xx          int // including 429
	NoAnswer           int // timeout or connection error
}

// Latency summarises a set of durations.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

// ProbeStats summarises the probes of one health endpoint.
type ProbeStats struct {
	Latency
	// Failures are probes without an answer within 1 s, and answers other
	// than 200 (/livez) or 200 and 503 (/readyz).
	Failures int
	// NotReady counts /readyz answers of 503.
	NotReady int
}

// Transition is a change of a breaker's state seen by the poller.
type Transition struct {
	At         time.Duration // offset from the start of the load
	Dependency string
	From, To   string
}

// FaultHits is how many requests a fault phase hit.
type FaultHits struct {
	Phase Phase
	Hits  int64
}

// Row is one step of the report's timeline.
type Row struct {
	From, To       time.Duration
	Faults         []string // phases active at the start of the step
	Posts, Acks    int
	Refused        int // 503 and other 5xx/4xx
	NoAnswer       int
	AckP99         time.Duration
	HealthMax      time.Duration
	HealthFailures int
	Backlog        int            // largest spool size sampled
	Forwarded      int            // copies forwarded for the first time
	Breakers       map[string]int // highest state sampled
}

// Report is the outcome of a replay.
type Report struct {
	Rate     int
	Duration time.Duration
	Faults   []Phase
	// Relay is the relay's settings in effect.
	Relay RelaySettings
	// Generator settings in effect.
	MaxInFlight  int
	AckTimeout   time.Duration
	RetryDelay   time.Duration
	MaxAttempts  int
	DrainTimeout time.Duration

	Elapsed time.Duration // from the start of the load to the end of the drain wait

	Notifications int // planned
	Skipped       int // not sent: the generator's in-flight bound was reached
	Acked         int // eventually answered 200
	Rejected      int // answered a final 4xx (SNS discards those)
	Unacked       int // out of attempts without a 200

	Answers Answers
	Ack     Latency // every attempt, answered or not, as the sender saw it

	Livez, Readyz ProbeStats
	Health        Latency // both endpoints
	// HealthFailures is Livez.Failures + Readyz.Failures.
	HealthFailures int

	BreakerTransitions map[string]int
	Transitions        []Transition // in order, at most maxTransitions
	BacklogMax         int
	DeadLetters        int

	// FaultEnd is when the last fault phase ended (0 without faults).
	FaultEnd time.Duration
	// DrainAfterFault is the time from FaultEnd until every copy of every
	// mail acknowledged by FaultEnd was forwarded; FaultBacklogCleared is
	// false when some never was.
	DrainAfterFault     time.Duration
	FaultBacklogCleared bool
	// DrainAfterFault99 is the time from FaultEnd until 99% of those
	// copies were forwarded: the tail above it is mail waiting out its
	// retry backoff.
	DrainAfterFault99 time.Duration
	// DrainAfterLoad is the time from the end of the load until the spool
	// was empty and every acknowledged mail forwarded; Drained is false
	// when that did not happen within DrainTimeout.
	DrainAfterLoad time.Duration
	Drained        bool

	ExpectedCopies int // copies the acknowledged mails must be forwarded as
	Forwarded      int // sends the SES stand-in accepted
	Lost           int // expected copies never forwarded
	Duplicated     int // sends beyond the first of a copy (of any of our mails)
	Unexpected     int // sends of copies not expected (mail never acknowledged, or no token of ours)

	PeakRSS, PeakHeap                              float64 // bytes, whole process
	StartGoroutines, PeakGoroutines, EndGoroutines int

	// Retries counts mailrelay_messages_total{outcome="retried"} by
	// reason; Calls counts mailrelay_external_call_duration_seconds
	// observations by "service outcome".
	Retries map[string]int
	Calls   map[string]int

	S3Requests, SESRequests int64 // requests that reached the injectors
	FaultHits               []FaultHits
	Timeline                []Row
}

// maxTransitions bounds the transitions kept in the report.
const maxTransitions = 200

// Problems lists the promises the relay broke in this replay; empty is a
// pass.
func (r *Report) Problems() []string {
	var p []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	add(r.Lost > 0, "%d acknowledged copies never forwarded", r.Lost)
	add(r.Duplicated > 0, "%d copies forwarded more than once", r.Duplicated)
	add(r.Unacked > 0, "%d notifications never acknowledged in %d attempts", r.Unacked, r.MaxAttempts)
	add(r.Rejected > 0, "%d notifications refused with a final 4xx", r.Rejected)
	add(r.HealthFailures > 0, "%d health probes failed", r.HealthFailures)
	add(!r.Drained, "not drained within %s", r.DrainTimeout)
	add(r.DeadLetters > 0, "%d notifications dead-lettered", r.DeadLetters)
	add(r.Skipped > 0, "%d notifications not sent: generator in-flight bound %d reached", r.Skipped, r.MaxInFlight)
	return p
}

var stateNames = []string{"closed", "half-open", "open"}

func stateName(v int) string {
	if v >= 0 && v < len(stateNames) {
		return stateNames[v]
	}
	return fmt.Sprint(v)
}

func latencyOf(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	q := func(f float64) time.Duration {
		i := int(math.Ceil(f*float64(len(d)))) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	return Latency{N: len(d), P50: q(.50), P99: q(.99), Max: d[len(d)-1]}
}

// buildReport computes the report from everything recorded.
func buildReport(s Scenario, e *env, g *generator, mon *monitors, t0 time.Time, loadEnd time.Duration, drained bool, drainAt time.Duration) *Report {
	cfg := e.Config
	r := &Report{
		Rate: s.Rate, Duration: s.Duration, Faults: s.Faults,
		Relay: RelaySettings{
			Workers: cfg.Workers, SpoolMaxMessages: cfg.SpoolMaxMessages, SpoolMaxBytes: cfg.SpoolMaxBytes,
			S3Timeout: cfg.S3Timeout, SESTimeout: cfg.SESTimeout, RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax,
			InboundMaxConns: cfg.InboundMaxConns, AWSMaxAttempts: cfg.AWSMaxAttempts,
			BreakerFailures: e.breaker.Failures, BreakerOpenTimeout: e.breaker.OpenTimeout, Args: s.Relay.Args,
		},
		MaxInFlight: s.MaxInFlight, AckTimeout: s.AckTimeout, RetryDelay: s.RetryDelay,
		MaxAttempts: s.MaxAttempts, DrainTimeout: s.DrainTimeout,
		Elapsed:       time.Since(t0),
		Notifications: len(g.mails),
		Skipped:       int(g.skipped.Load()),
		FaultEnd:      s.faultEnd(),
		Drained:       drained,
		DeadLetters:   e.Relay.Spool.Stats().DeadLetters,
		S3Requests:    e.s3f.requests.Load(),
		SESRequests:   e.sesf.requests.Load(),
	}
	if r.Relay.BreakerFailures == 0 {
		r.Relay.BreakerFailures = awsclient.DefaultBreakerFailures
	}
	if r.Relay.BreakerOpenTimeout == 0 {
		r.Relay.BreakerOpenTimeout = awsclient.DefaultBreakerOpenTimeout
	}
	if drained {
		r.DrainAfterLoad = max(0, drainAt-loadEnd)
	}
	for _, in := range []*injector{e.s3f.injector, e.sesf.injector} {
		for i, p := range in.phases {
			r.FaultHits = append(r.FaultHits, FaultHits{Phase: p, Hits: in.hits[i].Load()})
		}
	}

	// Deliveries.
	for _, m := range g.mails {
		switch {
		case !m.started:
		case m.acked:
			r.Acked++
		case m.rejected:
			r.Rejected++
		default:
			r.Unacked++
		}
	}
	acks := make([]time.Duration, 0, len(g.posts))
	for _, p := range g.posts {
		acks = append(acks, p.took)
		switch {
		case p.code == http.StatusOK:
			r.Answers.OK++
		case p.code == http.StatusServiceUnavailable:
			r.Answers.ServiceUnavailable++
		case p.code >= 500:
			r.Answers.Other5xx++
		case p.code >= 400:
			r.Answers.Status4xx++
		default:
			r.Answers.NoAnswer++
		}
	}
	r.Ack = latencyOf(acks)

	// Health.
	var live, ready, all []time.Duration
	for _, p := range mon.probes {
		all = append(all, p.took)
		st := &r.Livez
		if p.path == "/readyz" {
			st = &r.Readyz
			ready = append(ready, p.took)
			if p.code == http.StatusServiceUnavailable {
				st.NotReady++
				continue
			}
		} else {
			live = append(live, p.took)
		}
		if p.code != http.StatusOK {
			st.Failures++
		}
	}
	r.Livez.Latency, r.Readyz.Latency, r.Health = latencyOf(live), latencyOf(ready), latencyOf(all)
	r.HealthFailures = r.Livez.Failures + r.Readyz.Failures

	// Breakers and backlog.
	r.BreakerTransitions = map[string]int{}
	last := map[string]int{}
	for _, smp := range mon.samples {
		r.BacklogMax = max(r.BacklogMax, smp.queue)
		deps := make([]string, 0, len(smp.breakers))
		for d := range smp.breakers {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			v := smp.breakers[d]
			prev, seen := last[d]
			last[d] = v
			if _, ok := r.BreakerTransitions[d]; !ok {
				r.BreakerTransitions[d] = 0
			}
			if !seen || prev == v {
				continue
			}
			r.BreakerTransitions[d]++
			if len(r.Transitions) < maxTransitions {
				r.Transitions = append(r.Transitions, Transition{At: smp.at, Dependency: d, From: stateName(prev), To: stateName(v)})
			}
		}
	}
	for i, ms := range mon.mem {
		r.PeakRSS = max(r.PeakRSS, ms.rss)
		r.PeakHeap = max(r.PeakHeap, ms.heap)
		r.PeakGoroutines = max(r.PeakGoroutines, int(ms.goroutines))
		if i == 0 {
			r.StartGoroutines = int(ms.goroutines)
		}
		r.EndGoroutines = int(ms.goroutines)
	}

	// Forwards: the SES stand-in's record is the truth.
	expected := g.expected()
	counts := map[string]int{}
	first := map[string]time.Duration{}
	for _, sent := range e.SES.Sent() {
		r.Forwarded++
		k := sentCopy(sent)
		counts[k]++
		if counts[k] == 1 {
			first[k] = sent.At.Sub(t0)
		}
	}
	want := map[string]bool{}
	for token, copies := range expected {
		for _, c := range copies {
			k := copyKey(token, c)
			want[k] = true
			r.ExpectedCopies++
			if counts[k] == 0 {
				r.Lost++
			}
		}
	}
	for k, n := range counts {
		if k != "" {
			r.Duplicated += n - 1
		}
		if !want[k] {
			r.Unexpected += n
		}
	}

	// Drain after the fault: the last first-forward of a copy of a mail
	// acknowledged by the end of the faults.
	if r.FaultEnd > 0 {
		r.FaultBacklogCleared = true
		var fwd []time.Duration
		for _, m := range g.mails {
			if !m.acked || m.ackAt > r.FaultEnd {
				continue
			}
			for _, c := range m.copies {
				at, ok := first[copyKey(m.token, c)]
				if !ok {
					r.FaultBacklogCleared = false
					continue
				}
				fwd = append(fwd, max(0, at-r.FaultEnd))
			}
		}
		l := latencyOf(fwd)
		if r.FaultBacklogCleared {
			r.DrainAfterFault = l.Max
		}
		r.DrainAfterFault99 = l.P99
	}

	r.Retries, r.Calls = map[string]int{}, map[string]int{}
	if mfs, err := e.metrics.Registry.Gather(); err == nil {
		for _, mf := range mfs {
			for _, metric := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range metric.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				switch mf.GetName() {
				case "mailrelay_messages_total":
					if labels["outcome"] == "retried" {
						r.Retries[labels["reason"]] += int(metric.GetCounter().GetValue())
					}
				case "mailrelay_external_call_duration_seconds":
					r.Calls[labels["service"]+" "+labels["outcome"]] += int(metric.GetHistogram().GetSampleCount())
				}
			}
		}
	}

	r.Timeline = timeline(s, r.Elapsed, g.posts, mon, first)
	return r
}

// timeline buckets what happened into about 24 steps of whole seconds.
func timeline(s Scenario, elapsed time.Duration, posts []post, mon *monitors, first map[string]time.Duration) []Row {
	step := max(time.Second, (elapsed / 24).Round(time.Second))
	n := int(elapsed/step) + 1
	rows := make([]Row, n)
	for i := range rows {
		rows[i].From, rows[i].To = time.Duration(i)*step, time.Duration(i+1)*step
		rows[i].Breakers = map[string]int{}
		for _, p := range s.Faults {
			if rows[i].From >= p.Start && rows[i].From < p.End() || p.Start >= rows[i].From && p.Start < rows[i].To {
				rows[i].Faults = append(rows[i].Faults, string(p.Target)+":"+string(p.Kind))
			}
		}
	}
	idx := func(at time.Duration) int {
		if at < 0 {
			return -1
		}
		return min(int(at/step), n-1)
	}
	lat := make([][]time.Duration, n)
	for _, p := range posts {
		i := idx(p.at)
		if i < 0 {
			continue
		}
		rows[i].Posts++
		lat[i] = append(lat[i], p.took)
		switch {
		case p.code == http.StatusOK:
			rows[i].Acks++
		case p.code == 0:
			rows[i].NoAnswer++
		default:
			rows[i].Refused++
		}
	}
	for i := range rows {
		rows[i].AckP99 = latencyOf(lat[i]).P99
	}
	for _, p := range mon.probes {
		if i := idx(p.at); i >= 0 {
			rows[i].HealthMax = max(rows[i].HealthMax, p.took)
			if p.code == 0 || p.path == "/livez" && p.code != http.StatusOK {
				rows[i].HealthFailures++
			}
		}
	}
	for _, smp := range mon.samples {
		if i := idx(smp.at); i >= 0 {
			rows[i].Backlog = max(rows[i].Backlog, smp.queue)
			for d, v := range smp.breakers {
				rows[i].Breakers[d] = max(rows[i].Breakers[d], v)
			}
		}
	}
	for _, at := range first {
		if i := idx(at); i >= 0 {
			rows[i].Forwarded++
		}
	}
	return rows
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// counts renders a map as "key n, key n" in key order.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

// String renders the report as Markdown: the summary table, the breaker
// transitions and the timeline.
func (r *Report) String() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	faults := FormatFaults(r.Faults)
	if faults == "" {
		faults = "none"
	}
	w("## Incident replay: %d/s for %s, faults %s\n\n", r.Rate, r.Duration, faults)
	rs := r.Relay
	w("Relay: workers %d, spool bounds %d messages / %d MiB, s3-timeout %s, ses-timeout %s, aws-max-attempts %d, "+
		"retry %s..%s, inbound-max-conns %d, breaker %d failures / open %s",
		rs.Workers, rs.SpoolMaxMessages, rs.SpoolMaxBytes>>20, rs.S3Timeout, rs.SESTimeout, rs.AWSMaxAttempts,
		rs.RetryMin, rs.RetryMax, rs.InboundMaxConns, rs.BreakerFailures, rs.BreakerOpenTimeout)
	if len(rs.Args) > 0 {
		w(", %s", strings.Join(rs.Args, " "))
	}
	w(".\nSender (SNS stand-in): ack timeout %s, retry after %s, at most %d attempts, at most %d in flight.\n\n",
		r.AckTimeout, r.RetryDelay, r.MaxAttempts, r.MaxInFlight)

	w("| measure | value |\n|---|---|\n")
	w("| notifications sent / acknowledged | %d / %d |\n", r.Notifications-r.Skipped, r.Acked)
	w("| never acknowledged / refused (4xx) / not sent | %d / %d / %d |\n", r.Unacked, r.Rejected, r.Skipped)
	w("| delivery attempts | %d |\n", r.Ack.N)
	w("| answers 200 / 503 / other 5xx / 4xx / none | %d / %d / %d / %d / %d |\n",
		r.Answers.OK, r.Answers.ServiceUnavailable, r.Answers.Other5xx, r.Answers.Status4xx, r.Answers.NoAnswer)
	w("| ack p50 / p99 / max | %s / %s / %s |\n", ms(r.Ack.P50), ms(r.Ack.P99), ms(r.Ack.Max))
	w("| health probes | %d |\n", r.Health.N)
	w("| health p50 / p99 / max | %s / %s / %s |\n", ms(r.Health.P50), ms(r.Health.P99), ms(r.Health.Max))
	w("| health failures (/livez, /readyz) | %d (%d, %d) |\n", r.HealthFailures, r.Livez.Failures, r.Readyz.Failures)
	w("| /readyz answered 503 | %d |\n", r.Readyz.NotReady)
	var deps []string
	for d := range r.BreakerTransitions {
		deps = append(deps, d)
	}
	sort.Strings(deps)
	for _, d := range deps {
		w("| breaker transitions %s | %d |\n", d, r.BreakerTransitions[d])
	}
	w("| backlog (max spool size) | %d |\n", r.BacklogMax)
	if r.FaultEnd > 0 {
		if r.FaultBacklogCleared {
			w("| drain after fault end (%s) | %s |\n", r.FaultEnd, ms(r.DrainAfterFault))
		} else {
			w("| drain after fault end (%s) | not drained |\n", r.FaultEnd)
		}
	}
	if r.FaultEnd > 0 {
		w("| 99%% of that backlog forwarded after | %s |\n", ms(r.DrainAfterFault99))
	}
	if r.Drained {
		w("| drain after load end | %s |\n", ms(r.DrainAfterLoad))
	} else {
		w("| drain after load end | not drained in %s |\n", r.DrainTimeout)
	}
	w("| copies expected / forwarded | %d / %d |\n", r.ExpectedCopies, r.Forwarded)
	w("| **lost / duplicated** | **%d / %d** |\n", r.Lost, r.Duplicated)
	w("| unexpected forwards / dead letters | %d / %d |\n", r.Unexpected, r.DeadLetters)
	w("| peak RSS / heap in use (whole process) | %s / %s |\n", mib(r.PeakRSS), mib(r.PeakHeap))
	w("| goroutines start / peak / end | %d / %d / %d |\n", r.StartGoroutines, r.PeakGoroutines, r.EndGoroutines)
	w("| relay retries by reason | %s |\n", counts(r.Retries))
	w("| external calls by outcome | %s |\n", counts(r.Calls))
	w("| requests to S3 / SES | %d / %d |\n", r.S3Requests, r.SESRequests)
	for _, h := range r.FaultHits {
		w("| requests hit by %s | %d |\n", h.Phase, h.Hits)
	}
	w("| elapsed | %s |\n", r.Elapsed.Round(100*time.Millisecond))

	if len(r.Transitions) > 0 {
		w("\nBreaker transitions (sampled every 100 ms): ")
		for i, t := range r.Transitions {
			if i > 0 {
				w(", ")
			}
			w("%s %s→%s @%.1fs", t.Dependency, t.From, t.To, t.At.Seconds())
		}
		w("\n")
	}

	w("\n| t (s) | faults | posts | 200 | refused | no answer | ack p99 | health max | health fail | backlog | forwarded | s3 | ses |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Timeline {
		f := strings.Join(row.Faults, " ")
		if f == "" {
			f = "—"
		}
		w("| %.0f–%.0f | %s | %d | %d | %d | %d | %s | %s | %d | %d | %d | %s | %s |\n",
			row.From.Seconds(), row.To.Seconds(), f, row.Posts, row.Acks, row.Refused, row.NoAnswer,
			ms(row.AckP99), ms(row.HealthMax), row.HealthFailures, row.Backlog, row.Forwarded,
			stateName(row.Breakers["s3"]), stateName(row.Breakers["ses"]))
	}
	if p := r.Problems(); len(p) > 0 {
		w("\nProblems:\n")
		for _, s := range p {
			w("- %s\n", s)
		}
	} else {
		w("\nNo problems: every acknowledged mail forwarded exactly once, health answered throughout.\n")
	}
	return b.String()
}
