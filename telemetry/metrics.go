// Package telemetry holds the relay's Prometheus metrics and its structured
// logger. Nothing here is global: cmd builds one Metrics and hands it to the
// packages that record into it.
package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Outcome label values of mailrelay_external_call_duration_seconds.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"
	OutcomeTimeout = "timeout"
	// OutcomeBreakerOpen: the call was refused by the dependency's open
	// circuit breaker; the same word as failure.ReasonBreakerOpen (a test
	// keeps them equal: telemetry depends on no other package of the relay,
	// so health, which serves it, stays free of the mail pipeline).
	OutcomeBreakerOpen = "breaker_open"
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
	BreakerState         *prometheus.GaugeVec   // dependency
	Messages             *prometheus.CounterVec // outcome, reason
	Panics               *prometheus.CounterVec // where
	ProcessDuration      prometheus.Histogram
	InFlightBytes        prometheus.Gauge
	HealthRequests       *prometheus.HistogramVec // path
	SQSMessages          *prometheus.CounterVec   // outcome, reason: the SQS intake
	S3ObjectsNotDeleted  prometheus.Counter       // batched deletes given up on

	// queue computes mailrelay_queue_messages, _queue_bytes,
	// _queue_oldest_age_seconds and _deadletter_messages when scraped.
	queue *queueCollector
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
		queue: newQueueCollector(),
		HealthRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailrelay_health_request_duration_seconds",
			Help:    "Time to answer health endpoint requests.",
			Buckets: latencyBuckets,
		}, []string{"path"}),
		SQSMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailrelay_sqs_messages_total",
			Help: "Messages received from the SQS intake queue, by what the intake did with them.",
		}, []string{"outcome", "reason"}),
		S3ObjectsNotDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailrelay_s3_objects_not_deleted_total",
			Help: "S3 objects of finished mail that batched deletes gave up on (two DeleteObjects failed for them, or shutdown came first); the bucket's lifecycle expiry removes them.",
		}),
	}
	r.MustRegister(
		m.ExternalCallDuration, m.InboundRequests, m.AckDuration, m.queue,
		m.BreakerState, m.Messages,
		m.Panics, m.ProcessDuration, m.InFlightBytes, m.HealthRequests, m.SQSMessages,
		m.S3ObjectsNotDeleted,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// QueueStats is the size of the relay's queue (the spool) at one moment.
type QueueStats struct {
	Messages    int       // accepted and not yet finished: spooled, in flight or waiting to retry
	Bytes       int64     // bytes of those notifications
	DeadLetters int       // messages in the dead-letter store
	Oldest      time.Time // when the oldest unfinished notification was accepted (zero: none)
}

// SetQueueStats registers the function that tells the queue's size. The
// queue gauges are computed from it each time the registry is gathered, so a
// scrape sees the spool as it is then; until it is set (and if it is set to
// nil) they are not exported. A relay that restarts on the same Metrics
// registers its new spool's function in place of the old one.
func (m *Metrics) SetQueueStats(stats func() QueueStats) { m.queue.set(stats) }

// queueCollector exports the queue gauges from one call of the registered
// stats function per scrape, so the four agree with each other.
type queueCollector struct {
	messages, bytes, oldestAge, deadLetters *prometheus.Desc

	mu    sync.Mutex
	stats func() QueueStats
}

func newQueueCollector() *queueCollector {
	return &queueCollector{
		messages: prometheus.NewDesc("mailrelay_queue_messages",
			"Notifications accepted and not yet finished (spooled, in flight or waiting to retry).", nil, nil),
		bytes: prometheus.NewDesc("mailrelay_queue_bytes",
			"Bytes of notifications accepted and not yet finished.", nil, nil),
		oldestAge: prometheus.NewDesc("mailrelay_queue_oldest_age_seconds",
			"Age of the oldest unfinished notification in the spool.", nil, nil),
		deadLetters: prometheus.NewDesc("mailrelay_deadletter_messages",
			"Messages in the dead-letter store awaiting an operator.", nil, nil),
	}
}

func (c *queueCollector) set(stats func() QueueStats) {
	c.mu.Lock()
	c.stats = stats
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.bytes
	ch <- c.oldestAge
	ch <- c.deadLetters
}

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	stats := c.stats
	c.mu.Unlock()
	if stats == nil {
		return
	}
	st := stats()
	age := 0.0
	if !st.Oldest.IsZero() {
		age = time.Since(st.Oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(c.deadLetters, prometheus.GaugeValue, float64(st.DeadLetters))
}
