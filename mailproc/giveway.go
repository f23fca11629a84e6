package mailproc

import "runtime/metrics"

// The intake comes first. An acknowledgement is a few hundred
// microseconds of CPU (signature check, one synced spool write) that SNS
// waits for; a mail in the spool can wait. Go's scheduler has no
// priorities, so the pool makes room instead: when the intake is
// answering a delivery and goroutines are queueing for a CPU (as many
// runnable as GOMAXPROCS), a worker about to take the next mail takes the
// pool's single lane first, so that while the CPUs are short one worker at
// a time processes mail and the others wait off the CPU (not runnable).
// Each mail's worker checks again before the next one; as soon as the CPUs
// are free or the intake idle, every worker goes back to taking mail at
// once. The lane is never given up to the intake entirely: one worker
// always progresses, so a steady overload drains the spool slowly instead
// of not at all (and a full spool answers 503: SNS retries).
//
// When the CPUs are not short (the workers waiting on S3 and SES, as in
// production) nothing changes: the check is an atomic load and a runtime
// counter (tens of nanoseconds).

// cpuShort reports whether goroutines are waiting for a CPU: at least as
// many runnable (ready, not running) as GOMAXPROCS.
func cpuShort() bool {
	s := [2]metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}, {Name: "/sched/gomaxprocs:threads"}}
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return false
	}
	return s[0].Value.Uint64() >= s[1].Value.Uint64()
}

// giveWay takes the lane and returns true when the intake is busy and the
// CPUs are short; the caller releases p.lane after its mail.
func (p *Pool) giveWay() bool {
	active := p.cfg.IntakeActive
	if active == nil || active() == 0 || !cpuShort() {
		return false
	}
	p.lane.Lock()
	return true
}
