package deploy

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
	"github.com/mailrelay/mailrelay/telemetry"
)

// exported maps each metric family a running relay exports to its label
// names (le for histograms).
type exported map[string]map[string]bool

// scrapeRelay starts the real relay in-process with the stand-ins of
// relaytest (S3, SES, SNS signer), records one sample into
// every labelled metric so that it appears and scrapes its /metrics; the
// relay stops when the test ends.
func scrapeRelay(t *testing.T) exported {
	t.Helper()
	r := relaytest.Start(t, relaytest.Options{}).Relay

	// Vectors appear only once a label combination is used.
	m := r.Metrics
	m.ExternalCallDuration.WithLabelValues("s3", "GetObject", telemetry.OutcomeOK).Observe(0.01)
	m.InboundRequests.WithLabelValues("Notification", "200").Inc()
	m.BreakerState.WithLabelValues("s3").Set(0)
	m.Messages.WithLabelValues(telemetry.MsgForwarded, "ok").Inc()
	m.Panics.WithLabelValues("worker").Add(0)
	m.HealthRequests.WithLabelValues("/livez").Observe(0.001)
	m.AckDuration.Observe(0.001)
	m.ProcessDuration.Observe(0.01)

	resp, err := http.Get("http://" + r.HealthAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := exported{}
	for name, f := range fams {
		labels := map[string]bool{}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			labels["le"] = true
		case dto.MetricType_SUMMARY:
			labels["quantile"] = true
		}
		out[name] = labels
	}
	return out
}

// TestScrapeRelay makes sure the scrape sees the operator contract's metrics, so that the
// dashboard and alert checks compare against something real.
func TestScrapeRelay(t *testing.T) {
	got := scrapeRelay(t)
	for name, labels := range map[string][]string{
		"mailrelay_external_call_duration_seconds": {"service", "operation", "outcome", "le"},
		"mailrelay_inbound_requests_total":         {"type", "code"},
		"mailrelay_ack_duration_seconds":           {"le"},
		"mailrelay_queue_messages":                 nil,
		"mailrelay_breaker_state":                  {"dependency"},
		"mailrelay_messages_total":                 {"outcome", "reason"},
	} {
		l, ok := got[name]
		if !ok {
			t.Errorf("relay does not export %s", name)
			continue
		}
		for _, want := range labels {
			if !l[want] {
				t.Errorf("%s has no label %s (has %v)", name, want, l)
			}
		}
	}
}
