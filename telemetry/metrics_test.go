package telemetry

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestContractMetricNames(t *testing.T) {
	m := NewMetrics()
	// Vector metrics only appear once a child exists.
	m.ExternalCallDuration.WithLabelValues("s3", "GetObject", OutcomeOK).Observe(0.01)
	m.InboundRequests.WithLabelValues("Notification", "200").Inc()
	m.AckDuration.Observe(0.001)
	m.QueueMessages.Set(3)
	m.BreakerState.WithLabelValues("s3").Set(0)
	m.Messages.WithLabelValues(MsgForwarded, "ok").Inc()
	for _, name := range []string{
		"mailrelay_external_call_duration_seconds", "mailrelay_inbound_requests_total",
		"mailrelay_ack_duration_seconds", "mailrelay_queue_messages",
		"mailrelay_breaker_state", "mailrelay_messages_total",
	} {
		n, err := testutil.GatherAndCount(m.Registry, name)
		if err != nil || n == 0 {
			t.Errorf("%s: count %d err %v", name, n, err)
		}
	}
	if got := testutil.ToFloat64(m.QueueMessages); got != 3 {
		t.Errorf("queue = %v", got)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hidden")
	l.Info("shown", "ses_message_id", "abc")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"ses_message_id":"abc"`) {
		t.Errorf("log output %q", buf.String())
	}
	if _, err := NewLogger(&buf, "loud", "json"); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := NewLogger(&buf, "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
}
