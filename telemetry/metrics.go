// Package telemetry holds the relay's Prometheus metrics and its structured
// logger. Nothing here is global: cmd builds one Metrics and hands it to the
// packages that record into it.
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// Outcome label values of mailrelay_external_call_duration_seconds.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"
	OutcomeTimeout = "timeout"
	// OutcomeBreakerOpen: the call was refused by the dependency's open
	// circuit breaker; the same word as the failure reason.
	OutcomeBreakerOpen = string(failure.ReasonBreakerOpen)
)

// Outcome label values of mailrelay_messages_total (its reason label takes
// the failure.Reason values).
const (
	MsgForwarded    = "forwarded"
	MsgDropped      = "dropped"
	MsgRetried      = "retried"
	MsgDeadLettered = "dead_lettered"
)

// Metrics are the relay's metrics (names fixed by the operator contract).
type Metrics struct {
	Registry *prometheus.Registry

	ExternalCallDuration *prometheus.HistogramVec // service, operation, outcome
	InboundRequests      *prometheus.CounterVec   // type, code
	AckDuration          prometheus.Histogram
	QueueMessages        prometheus.Gauge
	QueueBytes           prometheus.Gauge
	QueueOldestAge       prometheus.Gauge
	DeadLetterMessages   prometheus.Gauge
	BreakerState         *prometheus.GaugeVec   // dependency
	Messages             *prometheus.CounterVec // outcome, reason
	Panics               *prometheus.CounterVec // where
	ProcessDuration      prometheus.Histogram
	InFlightBytes        prometheus.Gauge
	HealthRequests       *prometheus.HistogramVec // path
}

// latency buckets from 0.5 ms to 30 s: fine resolution where acks and healthy
// calls live, and enough at the top to see an incident's 15-30 s stalls.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}

// NewMetrics creates and registers all metrics on a fresh registry, along
// with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		ExternalCallDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailrelay_external_call_duration_seconds",
			Help:    "Duration of calls to external dependencies (S3, SES, SNS cert/confirm fetches, ...).",
			Buckets: latencyBuckets,
		}, []string{"service", "operation", "outcome"}),
		InboundRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailrelay_inbound_requests_total",
			Help: "SNS deliveries received, by SNS message type and HTTP status code answered.",
		}, []string{"type", "code"}),
		AckDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailrelay_ack_duration_seconds",
			Help:    "Time from receiving an SNS delivery to answering it.",
			Buckets: latencyBuckets,
		}),
		QueueMessages: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_queue_messages",
			Help: "Notifications accepted and not yet finished (spooled, in flight or waiting to retry).",
		}),
		QueueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_queue_bytes",
			Help: "Bytes of notifications accepted and not yet finished.",
		}),
		QueueOldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_queue_oldest_age_seconds",
			Help: "Age of the oldest unfinished notification in the spool.",
		}),
		DeadLetterMessages: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_deadletter_messages",
			Help: "Messages in the dead-letter store awaiting an operator.",
		}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailrelay_breaker_state",
			Help: "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
		}, []string{"dependency"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailrelay_messages_total",
			Help: "Processing outcomes of mails: forwarded, dropped, retried, dead_lettered, with a reason.",
		}, []string{"outcome", "reason"}),
		Panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailrelay_panics_total",
			Help: "Panics recovered, by where they happened.",
		}, []string{"where"}),
		ProcessDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailrelay_process_duration_seconds",
			Help:    "Time to process one spooled notification (fetch, rewrite, send), per attempt.",
			Buckets: latencyBuckets,
		}),
		InFlightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailrelay_inflight_bytes",
			Help: "Bytes of raw mail currently held by workers (bounded by the in-flight byte budget).",
		}),
		HealthRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailrelay_health_request_duration_seconds",
			Help:    "Time to answer health endpoint requests.",
			Buckets: latencyBuckets,
		}, []string{"path"}),
	}
	r.MustRegister(
		m.ExternalCallDuration, m.InboundRequests, m.AckDuration, m.QueueMessages,
		m.QueueBytes, m.QueueOldestAge, m.DeadLetterMessages, m.BreakerState, m.Messages,
		m.Panics, m.ProcessDuration, m.InFlightBytes, m.HealthRequests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
