package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SpoolStats is what the spool's scrape-time metrics read.
type SpoolStats struct {
	DeadLetters      int
	DeadLetterBytes  int64
	OldestDeadLetter time.Time // zero if none
	// StorageOK is false while the spool refuses writes for want of disk
	// space or after a storage failure.
	StorageOK bool
}

// spoolMetrics are registered once per Metrics; source is replaced by a
// later SpoolMetrics call (a relay restarted in-process with the same
// Metrics reads its new spool).
type spoolMetrics struct {
	mu      sync.Mutex
	source  func() SpoolStats
	expired prometheus.Counter
}

func (sm *spoolMetrics) read() SpoolStats {
	sm.mu.Lock()
	src := sm.source
	sm.mu.Unlock()
	if src == nil {
		return SpoolStats{StorageOK: true}
	}
	return src()
}

var (
	spoolMu   sync.Mutex
	spoolRegs = map[*Metrics]*spoolMetrics{}
)

// SpoolMetrics registers on m.Registry the spool metrics computed at scrape
// from stats (mailrelay_deadletters, mailrelay_deadletter_bytes,
// mailrelay_deadletter_oldest_age_seconds, mailrelay_spool_storage_ok) and
// the counter mailrelay_deadletters_expired_total, whose add function it
// returns (for spool.Options.OnDeadLettersExpired). stats must be cheap
// (in-memory counters) and may be called before the spool is open.
func SpoolMetrics(m *Metrics, stats func() SpoolStats) (expired func(n int)) {
	spoolMu.Lock()
	defer spoolMu.Unlock()
	sm := spoolRegs[m]
	if sm == nil {
		sm = &spoolMetrics{expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailrelay_deadletters_expired_total",
			Help: "Dead letters deleted because they were over a dead-letter bound (count, bytes, age).",
		})}
		m.Registry.MustRegister(
			sm.expired,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mailrelay_deadletters",
				Help: "Dead letters held by the spool (bounded by --deadletter-max-messages).",
			}, func() float64 { return float64(sm.read().DeadLetters) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mailrelay_deadletter_bytes",
				Help: "Payload bytes of the dead letters (bounded by --deadletter-max-bytes).",
			}, func() float64 { return float64(sm.read().DeadLetterBytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mailrelay_deadletter_oldest_age_seconds",
				Help: "Age of the oldest dead letter (0 if none; bounded by --deadletter-max-age).",
			}, func() float64 {
				if t := sm.read().OldestDeadLetter; !t.IsZero() {
					return time.Since(t).Seconds()
				}
				return 0
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mailrelay_spool_storage_ok",
				Help: "1 while the spool can write; 0 while it refuses deliveries for want of disk space or after a storage failure.",
			}, func() float64 {
				if sm.read().StorageOK {
					return 1
				}
				return 0
			}),
		)
		spoolRegs[m] = sm
	}
	sm.mu.Lock()
	sm.source = stats
	sm.mu.Unlock()
	return func(n int) { sm.expired.Add(float64(n)) }
}
