package telemetry

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

func TestContractMetricNames(t *testing.T) {
	m := NewMetrics()
	// Vector metrics only appear once a child exists.
	m.ExternalCallDuration.WithLabelValues("s3", "GetObject", OutcomeOK).Observe(0.01)
	m.InboundRequests.WithLabelValues("Notification", "200").Inc()
	m.AckDuration.Observe(0.001)
	m.SetQueueStats(func() QueueStats { return QueueStats{Messages: 3} })
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
}

// The queue gauges are computed from the registered stats function at
// scrape time: each gather sees the queue as it is then, the four gauges
// come from one call, and nothing is exported before a function is set.
func TestQueueStatsAtScrape(t *testing.T) {
	m := NewMetrics()
	queue := []string{"mailrelay_queue_messages", "mailrelay_queue_bytes",
		"mailrelay_queue_oldest_age_seconds", "mailrelay_deadletter_messages"}
	if n, err := testutil.GatherAndCount(m.Registry, queue...); err != nil || n != 0 {
		t.Fatalf("before SetQueueStats: %d queue series (err %v), want none", n, err)
	}
	var calls int
	st := QueueStats{Messages: 2, Bytes: 300, DeadLetters: 1, Oldest: time.Now().Add(-time.Minute)}
	m.SetQueueStats(func() QueueStats { calls++; return st })
	want := func(messages, bytes, dead int) {
		t.Helper()
		exp := fmt.Sprintf(`
# HELP mailrelay_deadletter_messages Messages in the dead-letter store awaiting an operator.
# TYPE mailrelay_deadletter_messages gauge
mailrelay_deadletter_messages %d
# HELP mailrelay_queue_bytes Bytes of notifications accepted and not yet finished.
# TYPE mailrelay_queue_bytes gauge
mailrelay_queue_bytes %d
# HELP mailrelay_queue_messages Notifications accepted and not yet finished (spooled, in flight or waiting to retry).
# TYPE mailrelay_queue_messages gauge
mailrelay_queue_messages %d
`, dead, bytes, messages)
		if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(exp), queue[0], queue[1], queue[3]); err != nil {
			t.Error(err)
		}
	}
	want(2, 300, 1)
	st.Messages, st.Bytes = 5, 900
	want(5, 900, 1)
	calls = 0
	if _, err := m.Registry.Gather(); err != nil || calls != 1 {
		t.Errorf("one gather called the stats function %d times (err %v), want once", calls, err)
	}
	age := gaugeValue(t, m, "mailrelay_queue_oldest_age_seconds")
	if age < 59 || age > 120 {
		t.Errorf("oldest age %v s, want about 60", age)
	}
	st.Oldest = time.Time{}
	if age := gaugeValue(t, m, "mailrelay_queue_oldest_age_seconds"); age != 0 {
		t.Errorf("oldest age of an empty queue %v, want 0", age)
	}
	m.SetQueueStats(func() QueueStats { return QueueStats{Messages: 9} })
	want(9, 0, 0)
}

func gaugeValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
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

func TestOutcomeBreakerOpenIsTheFailureReason(t *testing.T) {
	if OutcomeBreakerOpen != string(failure.ReasonBreakerOpen) {
		t.Errorf("OutcomeBreakerOpen %q, failure.ReasonBreakerOpen %q: one word for one thing", OutcomeBreakerOpen, failure.ReasonBreakerOpen)
	}
}

// Durations read as people read them, in attributes, groups and With, in
// both formats.
func TestLoggerDurations(t *testing.T) {
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{"json", []string{`"timeout":"3s"`, `"grace":"25s"`, `"g":{"d":"1ms"}`}},
		{"text", []string{"timeout=3s", "grace=25s", "g.d=1ms"}},
	} {
		var buf bytes.Buffer
		l, err := NewLogger(&buf, "info", tc.format)
		if err != nil {
			t.Fatal(err)
		}
		l.With("timeout", 3*time.Second).Info("x", "grace", 25*time.Second, slog.Group("g", "d", time.Millisecond))
		for _, w := range tc.want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("%s: log lacks %s: %s", tc.format, w, buf.String())
			}
		}
	}
}
