package pace

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailrelay/mailrelay/telemetry"
)

// Metrics are the pacer's metrics.
type Metrics struct {
	RateLimit      prometheus.Gauge     // mailrelay_ses_send_rate_limit
	MaxSendRate    prometheus.Gauge     // mailrelay_ses_max_send_rate
	DailyQuotaUsed prometheus.Gauge     // mailrelay_ses_daily_quota_used_ratio
	TokenWait      prometheus.Histogram // mailrelay_ses_token_wait_seconds
	Throttles      prometheus.Counter   // mailrelay_ses_throttles_total
}

// tokenWaitBuckets span no wait at all to a minute.
var tokenWaitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics creates the pacer's metrics and registers them on reg. A
// registry that has them already (a relay restarted on the same metrics)
// keeps its own, which are returned.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RateLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_ses_send_rate_limit",
			Help: "Send rate in force on this replica (recipients per second): its share of the SES quota after throttling cuts.",
		}),
		MaxSendRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_ses_max_send_rate",
			Help: "The SES account's MaxSendRate as SES last reported it (recipients per second).",
		}),
		DailyQuotaUsed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_ses_daily_quota_used_ratio",
			Help: "SentLast24Hours / Max24HourSend of the SES account, with this replica's sends since SES was last asked (0 when unlimited or unknown).",
		}),
		TokenWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailrelay_ses_token_wait_seconds",
			Help:    "Time a worker waited for send tokens (the pace) before fetching and sending a mail.",
			Buckets: tokenWaitBuckets,
		}),
		Throttles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailrelay_ses_throttles_total",
			Help: "Sends SES answered with Throttling.",
		}),
	}
	telemetry.Register(reg, &m.RateLimit)
	telemetry.Register(reg, &m.MaxSendRate)
	telemetry.Register(reg, &m.DailyQuotaUsed)
	telemetry.Register(reg, &m.TokenWait)
	telemetry.Register(reg, &m.Throttles)
	return m
}
